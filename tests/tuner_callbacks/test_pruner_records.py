"""The pruner a sweep records in its study, as a job rebuilds it: from public names, old records included, in a
process that cannot import the sweeper's package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tuner_callbacks import WarmupPruner
from tuner_callbacks.optuna_storage import pruner_from_record, record_pruner

ROOT = Path(__file__).resolve().parents[2]
WILCOXON = {"_target_": "optuna.pruners.WilcoxonPruner", "p_threshold": 0.2}
RECORD = {"_target_": "tuner_callbacks.warmup_pruner.WarmupPruner", "n_warmup_steps": 50, "wrapped_pruner": WILCOXON}
# What sweepers before WarmupPruner moved to tuner_callbacks stored: the class under the sweeper's private module, a
# record with an inner pruner wrapped for hydra.utils.instantiate.
OLD_RECORD = {"_target_": "hydra.utils.instantiate",
              "config": {**RECORD, "_target_": "hydra_plugins.smart_optuna_sweeper._pruners.WarmupPruner"}}


@pytest.mark.parametrize("record", [RECORD, OLD_RECORD], ids=["current", "older_sweeper"])
def test_a_record_builds_its_pruner_and_the_ones_it_wraps(record):
    pruner = pruner_from_record(record)
    assert type(pruner) is WarmupPruner and pruner.n_warmup_steps == 50
    assert type(pruner.wrapped_pruner) is optuna.pruners.WilcoxonPruner and pruner.wrapped_pruner._p_threshold == 0.2


@pytest.mark.parametrize(("record", "named"), [
    ({"n_warmup_steps": 3}, "needs a _target_"),
    ({"_target_": "optuna.pruners.NoSuchPruner"}, "'optuna.pruners.NoSuchPruner' cannot be imported"),
    ({"_target_": "no_such_package.Pruner"}, "'no_such_package.Pruner' cannot be imported"),
])
def test_a_bad_record_is_refused_naming_its_target(record, named):
    with pytest.raises(ValueError, match=named):
        pruner_from_record(record)


# A job's process in which hydra_plugins cannot be imported: what it rebuilds must come from public names alone.
WORKER = """
import importlib.abc, json, sys

class NoSweeperPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hydra_plugins" or name.startswith("hydra_plugins."):
            raise ImportError(f"{name} is not importable in this worker")
        return None

sys.meta_path.insert(0, NoSweeperPackage())
from tuner_callbacks.optuna_storage import load_study_with_pruner

found = {}
for name in sys.argv[2:]:
    pruner = load_study_with_pruner(name, sys.argv[1]).pruner
    found[name] = [type(pruner).__module__ + "." + type(pruner).__name__, pruner.n_warmup_steps,
                   type(pruner.wrapped_pruner).__name__]
print(json.dumps({"found": found, "hydra_plugins_loaded": [m for m in sys.modules if m.startswith("hydra_plugins")]}))
"""


def test_a_worker_without_the_sweeper_package_loads_the_study_and_its_pruner(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    for name, record in (("current", RECORD), ("older_sweeper", OLD_RECORD)):
        record_pruner(optuna.create_study(study_name=name, storage=storage), record)
    result = subprocess.run([sys.executable, "-c", WORKER, storage, "current", "older_sweeper"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    expected = ["tuner_callbacks.warmup_pruner.WarmupPruner", 50, "WilcoxonPruner"]
    assert seen == {"found": {"current": expected, "older_sweeper": expected}, "hydra_plugins_loaded": []}


def test_the_blocker_would_catch_an_import_of_the_sweeper_package(tmp_path):
    """The worker test above proves something only if importing hydra_plugins really fails in the worker."""
    check = WORKER.split("from tuner_callbacks")[0] + "import hydra_plugins.smart_optuna_sweeper._pruners\n"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode != 0 and "hydra_plugins is not importable in this worker" in result.stderr

