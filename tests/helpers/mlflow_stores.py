"""MLflow stores for tests: SQLite, since MLflow 3 refuses file stores."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path


def fresh_mlflow_store(tmp_path_factory, folder: Path) -> str:
    """A new, empty SQLite MLflow store in ``folder``: a copy of one made once per test session, since MLflow
    takes seconds to create its schema and a copy takes milliseconds."""
    from mlflow import MlflowClient

    pristine = tmp_path_factory.getbasetemp() / "pristine-mlflow.db"
    if not pristine.exists():
        MlflowClient(f"sqlite:///{pristine}").search_experiments()  # the first query creates the schema
    shutil.copyfile(pristine, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to ``uri`` for the block, as a user's ``MLFLOW_TRACKING_URI`` would be:
    ``mlflow.pyfunc.load_model("models:/...")`` resolves names in that store."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
