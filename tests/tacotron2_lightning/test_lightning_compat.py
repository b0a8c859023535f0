"""Tacotron2's classes on each Lightning package: built by one function, at stable names, and a clear error when
one package's class meets the other's Trainer (the mistakes a new user makes, tried as they would)."""

from __future__ import annotations

import importlib
import inspect
import pickle
import re

import pytest
from hydra.utils import get_object

from tacotron2_lightning.lightning_compat import (
    LIGHTNING_PACKAGES,
    LightningPackageError,
    check_same_package,
    lightning_bases,
    lightning_packages,
    tacotron2_classes,
)
from tests.helpers.batches import tiny_config

OTHER = dict(zip(LIGHTNING_PACKAGES, reversed(LIGHTNING_PACKAGES), strict=True))


def trainer_of(package: str, tmp_path):
    return importlib.import_module(package).Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path)


@pytest.mark.parametrize("package", LIGHTNING_PACKAGES)
def test_each_class_lives_at_the_path_configs_name(package):
    classes = tacotron2_classes(package)
    home = importlib.import_module(f"tacotron2_lightning.flavours.{package}")
    lightning = importlib.import_module(package)
    for cls, base in zip(classes, (lightning.LightningModule, lightning.LightningDataModule), strict=True):
        path = f"tacotron2_lightning.flavours.{package}.{cls.__name__}"
        assert f"{cls.__module__}.{cls.__qualname__}" == path
        assert getattr(home, cls.__name__) is cls and get_object(path) is cls  # what Hydra's _target_ resolves
        assert pickle.loads(pickle.dumps(cls)) is cls
        assert issubclass(cls, base) and lightning_packages(cls) == {package}
    assert tacotron2_classes(package) is classes  # built once


def test_the_default_names_are_the_pytorch_lightning_classes():
    import tacotron2_lightning
    import tacotron2_lightning.data
    import tacotron2_lightning.data.datamodule
    import tacotron2_lightning.module

    module, data = tacotron2_classes("pytorch_lightning")
    assert tacotron2_lightning.Tacotron2Module is tacotron2_lightning.module.Tacotron2Module is module
    assert tacotron2_lightning.data.Tacotron2DataModule is tacotron2_lightning.data.datamodule.Tacotron2DataModule
    assert tacotron2_lightning.data.Tacotron2DataModule is data


@pytest.mark.parametrize("package", LIGHTNING_PACKAGES)
def test_a_pickled_module_comes_back_as_its_own_class(package):  # as DDP's spawn and DataLoader workers need
    module = tacotron2_classes(package).Tacotron2Module(tiny_config(), health_utterances=0)
    copy = pickle.loads(pickle.dumps(module))
    assert type(copy) is type(module)
    assert all((a == b).all() for a, b in zip(copy.state_dict().values(), module.state_dict().values(), strict=True))


def test_an_unknown_package_is_refused_naming_the_packages():
    with pytest.raises(ValueError, match=re.escape("'lightning' is not a Lightning package; use one of "
                                                   "['pytorch_lightning', 'lightning.pytorch']")):
        tacotron2_classes("lightning")


def test_lightning_packages_reads_classes_and_objects():
    assert lightning_packages(lightning_bases("Callback")[0]) == {"pytorch_lightning"}
    both = type("EitherCallback", lightning_bases("Callback"), {})
    assert lightning_packages(both()) == set(LIGHTNING_PACKAGES)
    assert lightning_packages(object()) == frozenset()


def test_the_user_mistake_lightning_refuses_inside_trainer_fit_and_the_class_names_the_import(tmp_path):
    """``from tacotron2_lightning import Tacotron2Module`` in a ``lightning.pytorch`` Trainer: Lightning refuses it in
    ``Trainer.fit`` with a bare TypeError before any of our code runs (it checks ``isinstance`` against its own
    LightningModule, and no class can be a LightningModule of both packages), so the class's own documentation
    names the import to use. If this starts to fail, Lightning changed the check: see whether our error can run."""
    import tacotron2_lightning
    from tacotron2_lightning import Tacotron2Module

    with pytest.raises(TypeError, match="must be a `LightningModule`"):
        trainer_of("lightning.pytorch", tmp_path).fit(Tacotron2Module(tiny_config(), health_utterances=0))
    first_paragraph = inspect.getdoc(Tacotron2Module).split("\n\n")[0]
    assert "for a ``lightning.pytorch.Trainer`` import ``tacotron2_lightning.flavours.lightning.pytorch." \
           "Tacotron2Module``" in first_paragraph
    assert "import\n``tacotron2_lightning.flavours.lightning.pytorch.Tacotron2Module``" in tacotron2_lightning.__doc__


@pytest.mark.parametrize("package", LIGHTNING_PACKAGES)
def test_data_of_the_other_package_is_refused_naming_the_import(package, tmp_path):
    """Lightning lets a datamodule of the other package in, then fails with "Expected a parent"; ours refuses it when
    the Trainer attaches it, before any data is read or generated."""
    module = tacotron2_classes(package).Tacotron2Module(tiny_config(), health_utterances=0)
    data = tacotron2_classes(OTHER[package]).Tacotron2DataModule(cache_dir=tmp_path / "no_cache")
    expected = (f"Tacotron2DataModule is a {OTHER[package]} class, but the Trainer is a {package}.Trainer, which "
                f"takes only {package} modules and data: use `from tacotron2_lightning.flavours.{package} import "
                "Tacotron2DataModule`")
    with pytest.raises(LightningPackageError, match=re.escape(expected)):
        trainer_of(package, tmp_path).fit(module, datamodule=data)
    assert not (tmp_path / "no_cache").exists()


def test_check_same_package_names_the_key_and_the_import(tmp_path):
    from tacotron2_lightning import Tacotron2Module

    module = Tacotron2Module(tiny_config(), health_utterances=0)
    with pytest.raises(LightningPackageError, match=re.escape(
            "model: Tacotron2Module is a pytorch_lightning class, but the Trainer is a lightning.pytorch.Trainer, "
            "which takes only lightning.pytorch modules and data: use `from tacotron2_lightning.flavours.lightning."
            "pytorch import Tacotron2Module`")):
        check_same_package(module, trainer_of("lightning.pytorch", tmp_path), "model")
    check_same_package(module, trainer_of("pytorch_lightning", tmp_path))  # its own package: no error
    check_same_package(type("EitherCallback", lightning_bases("Callback"), {})(),
                       trainer_of("lightning.pytorch", tmp_path))  # a callback of both packages fits either
