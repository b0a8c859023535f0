"""The dependency graph is a line: generic callbacks below, Tacotron2 beside them, the tuning app on top.

    hydra_plugins ──▶ tuner_callbacks ◀── tacotron2_lightning.app ──▶ tacotron2_lightning (model core)

Checked two ways: an AST walk of every import statement (inside functions too, where a cycle likes to hide), and
a fresh interpreter that imports every module of a package and then looks at what else got loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = "tacotron2_lightning.app"

# package (or subpackage) -> packages its modules must not import
FORBIDDEN = {
    "tuner_callbacks": ("tacotron2_lightning", "hydra_plugins"),
    "hydra_plugins": ("tacotron2_lightning",),
    "tacotron2_lightning": ("tuner_callbacks", "hydra_plugins", APP),  # the model core; the app is checked below
    APP: ("hydra_plugins",),
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, root: Path) -> set[str]:
    """Every module named by an import statement in ``path``, relative imports resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return found


def owner(module: str) -> str | None:
    """The layer a module belongs to: the longest key of FORBIDDEN it lies in."""
    layers = [layer for layer in FORBIDDEN if module == layer or module.startswith(layer + ".")]
    return max(layers, key=len, default=None)


def violations(root: Path) -> list[str]:
    """``file: imports X`` for each import that goes the wrong way under ``root``."""
    found = []
    for layer in FORBIDDEN:
        folder = root.joinpath(*layer.split("."))
        for path in sorted(folder.rglob("*.py")):
            if owner(module_name(path, root)) != layer:
                continue  # a deeper layer's file: checked under its own rule
            for name in sorted(imported_names(path, root)):
                bad = [f for f in FORBIDDEN[layer] if name == f or name.startswith(f + ".")]
                if bad and not (layer == "tacotron2_lightning" and owner(name) == "tacotron2_lightning"):
                    found.append(f"{path.relative_to(root)}: imports {name}")
    return found


def test_no_import_goes_the_wrong_way():
    assert violations(ROOT) == []


# Only these modules of a layer name a Lightning package (each one's docstring holds the rule); the app imports
# Lightning through the model core's.
LIGHTNING_COMPAT = {"tuner_callbacks": "tuner_callbacks.lightning_compat",
                    "tacotron2_lightning": "tacotron2_lightning.lightning_compat"}


@pytest.mark.parametrize("layer", sorted(LIGHTNING_COMPAT))
def test_one_module_of_a_layer_knows_the_two_lightning_packages(layer):
    found = []
    for path in sorted(ROOT.joinpath(*layer.split(".")).rglob("*.py")):
        if module_name(path, ROOT) == LIGHTNING_COMPAT[layer]:
            continue
        found += [f"{path.relative_to(ROOT)}: imports {name}" for name in sorted(imported_names(path, ROOT))
                  if name.split(".")[0] in ("pytorch_lightning", "lightning")]
    assert found == []


def test_the_check_finds_a_wrong_way_import_even_inside_a_function(tmp_path):
    for package in ("tuner_callbacks", "tacotron2_lightning", "tacotron2_lightning/app", "hydra_plugins/p"):
        (tmp_path / package).mkdir(parents=True, exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "tuner_callbacks" / "cb.py").write_text("def f():\n    from tacotron2_lightning import model\n")
    (tmp_path / "tacotron2_lightning" / "model.py").write_text("from ..tuner_callbacks import cb\n")
    (tmp_path / "tacotron2_lightning" / "module.py").write_text("import tacotron2_lightning.app.training\n")
    (tmp_path / "tacotron2_lightning" / "app" / "training.py").write_text(
        "import tuner_callbacks.cb\nfrom tacotron2_lightning import model\n")  # allowed
    (tmp_path / "hydra_plugins" / "p" / "sweeper.py").write_text("from tacotron2_lightning.app import training\n")
    assert violations(tmp_path) == [
        "tuner_callbacks/cb.py: imports tacotron2_lightning",
        "tuner_callbacks/cb.py: imports tacotron2_lightning.model",
        "hydra_plugins/p/sweeper.py: imports tacotron2_lightning.app",
        "hydra_plugins/p/sweeper.py: imports tacotron2_lightning.app.training",
        "tacotron2_lightning/model.py: imports tuner_callbacks",
        "tacotron2_lightning/model.py: imports tuner_callbacks.cb",
        "tacotron2_lightning/module.py: imports tacotron2_lightning.app.training",
    ]


LOADED = """
import importlib, json, pkgutil, sys
skip = set(sys.argv[2:])

def load(name):
    module = importlib.import_module(name)
    for info in pkgutil.iter_modules(getattr(module, "__path__", []), name + "."):
        if info.name.rpartition(".")[2] != "__main__" and info.name not in skip:
            load(info.name)

load(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                        ("tacotron2_lightning", "tuner_callbacks", "hydra_plugins"))))
"""


@pytest.mark.parametrize(("package", "skip", "forbidden"), [
    ("tuner_callbacks", (), ("tacotron2_lightning", "hydra_plugins")),
    ("tacotron2_lightning", (APP,), ("tuner_callbacks", "hydra_plugins", APP)),
    ("hydra_plugins.smart_optuna_sweeper", (), ("tacotron2_lightning",)),
])
def test_importing_every_module_of_a_package_loads_no_forbidden_one(package, skip, forbidden):
    result = subprocess.run([sys.executable, "-c", LOADED, package, *skip], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded and not [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]


# Names resolved at run time, which no import statement shows: each class name one layer writes down for another to
# import later must be public and in a layer the reader may import. The sweeper records its pruner in the study;
# every job, a tuner_callbacks reader, rebuilds it from there.
RECORDABLE = ("optuna.", "tuner_callbacks.")


def recorded_targets(record: object) -> list[str]:
    """Every ``_target_`` in a record, nested ones included."""
    if not isinstance(record, dict):
        return []
    own = [record["_target_"]] if "_target_" in record else []
    return own + [name for value in record.values() for name in recorded_targets(value)]


def pruner_options() -> list[str]:
    from hydra.core.config_store import ConfigStore

    import hydra_plugins.smart_optuna_sweeper.config  # noqa: F401  (registers the config groups)

    return sorted(name.removesuffix(".yaml") for name in ConfigStore.instance().list("hydra/sweeper/pruner")
                  if name.endswith(".yaml"))


def test_there_are_pruner_options_to_check():
    assert {"median", "wilcoxon", "patient", "learning_curve"} <= set(pruner_options())


@pytest.mark.parametrize("pruner", pruner_options())
def test_the_pruner_a_sweep_records_names_only_classes_its_jobs_may_import(pruner):
    from hydra_plugins.smart_optuna_sweeper._pruners import pruner_record
    from tests.hydra_plugins.scripted_sweep import search_config

    # hparams=search sets a warm-up, so the pruners without one of their own are wrapped.
    record = pruner_record(search_config(f"hydra/sweeper/pruner={pruner}").hydra.sweeper.pruner)
    names = recorded_targets(record)
    assert names and all(name.startswith(RECORDABLE) and "._" not in name for name in names), names


def test_old_names_in_recorded_studies_map_to_public_importable_classes():
    import importlib

    from tuner_callbacks.optuna_storage import RENAMED_TARGETS

    for new in RENAMED_TARGETS.values():
        module, _, name = new.rpartition(".")
        assert new.startswith(RECORDABLE) and "._" not in new and hasattr(importlib.import_module(module), name)
