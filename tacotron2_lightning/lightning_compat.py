"""The one place in the model core that knows there are two Lightning packages.

**The rule: ``pytorch_lightning`` is always installed (a dependency of smart-tuner); ``lightning`` is optional.**
``pytorch_lightning`` and ``lightning.pytorch`` ship the same classes twice, and a Trainer recognises a
LightningModule, a LightningDataModule, a callback or a logger by ``isinstance`` against its own package's class.
So:

- Tacotron2's recipe is written once with no Lightning base (``Tacotron2ModuleBase``, ``Tacotron2DataModuleBase``),
  and :func:`tacotron2_classes` builds ``Tacotron2Module`` and ``Tacotron2DataModule`` on each package. One class
  cannot be a LightningModule of both packages, so a Trainer needs the classes of its own package:
  ``tacotron2_lightning.flavours.pytorch_lightning.Tacotron2Module`` for a ``pytorch_lightning.Trainer``,
  ``tacotron2_lightning.flavours.lightning.pytorch.Tacotron2Module`` for a ``lightning.pytorch.Trainer``
  (the same for ``Tacotron2DataModule``). Those are the classes' names, kept stable for pickles and for the
  ``_target_`` of configs, saved run configs included: the path ends in the package's name, so
  ``_target_: tacotron2_lightning.flavours.${lightning}.Tacotron2Module`` follows the one ``lightning`` key.
  ``tacotron2_lightning.Tacotron2Module`` (and ``tacotron2_lightning.module.Tacotron2Module``,
  ``tacotron2_lightning.data.Tacotron2DataModule``) is the ``pytorch_lightning`` one. A checkpoint of either loads
  into either: it holds plain hyperparameters and weights, no class;
- a callback derives from the class of every installed package, ``pytorch_lightning``'s first:
  ``class ValidationMedia(*lightning_bases("Callback"))`` works in either Trainer; an ``isinstance`` check takes the
  same tuple: ``isinstance(logger, lightning_bases("loggers.MLFlowLogger"))``;
- what does not depend on the Trainer's package (``pl``, for annotations and ``pl.seed_everything``) comes from
  ``pytorch_lightning`` through this module: no other module of the model core imports a Lightning package
  (``tests/test_import_layers.py`` checks it);
- a Tacotron2 class handed to the other package's Trainer fails with :class:`LightningPackageError`, which names the
  import to use, wherever our code sees it first (:func:`check_same_package`). Lightning's own ``Trainer.fit``
  refuses a LightningModule of the other package with a bare ``TypeError`` before any of our code runs; the classes'
  docstrings name the import for that case.

``tuner_callbacks/lightning_compat.py`` does the same for the generic callbacks; the model core imports nothing of
it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
from typing import Any, NamedTuple

import pytorch_lightning as pl

__all__ = ["LIGHTNING_PACKAGES", "LightningPackageError", "Tacotron2Classes", "check_same_package", "flavour_module",
           "is_installed", "lightning_bases", "lightning_packages", "pl", "tacotron2_classes"]

LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning.pytorch")


class LightningPackageError(TypeError):
    """A Lightning object of one package handed to the other package's Trainer; the message names the import to
    use."""


class Tacotron2Classes(NamedTuple):
    """Tacotron2's classes on one Lightning package."""

    Tacotron2Module: type
    Tacotron2DataModule: type


def is_installed(package: str) -> bool:
    """Whether ``package`` (``"lightning.pytorch"``) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:  # "lightning.pytorch" when "lightning" is not installed
        return False


@functools.cache
def lightning_bases(path: str) -> tuple[type, ...]:
    """The class at ``path`` (``"Callback"``, ``"loggers.MLFlowLogger"``) in each installed Lightning package,
    ``pytorch_lightning``'s first: the bases of a class, or the classes of an ``isinstance`` check."""
    module_path, _, name = path.rpartition(".")
    return tuple(getattr(importlib.import_module(f"{package}.{module_path}" if module_path else package), name)
                 for package in LIGHTNING_PACKAGES if is_installed(package))


def lightning_packages(obj: Any) -> frozenset[str]:
    """The Lightning packages a class (or an object's class) derives from: none, one, or both for a callback on
    :func:`lightning_bases`. Read from the modules of its bases, so it never imports a package."""
    cls = obj if isinstance(obj, type) else type(obj)
    names = [base.__module__ for base in cls.__mro__]
    return frozenset(package for package in LIGHTNING_PACKAGES
                     if any(name == package or name.startswith(package + ".") for name in names))


def flavour_module(package: str) -> str:
    """The module that holds Tacotron2's classes on ``package``: ``tacotron2_lightning.flavours.<package>``."""
    if package not in LIGHTNING_PACKAGES:
        raise ValueError(f"{package!r} is not a Lightning package; use one of {list(LIGHTNING_PACKAGES)}")
    return f"tacotron2_lightning.flavours.{package}"


def tacotron2_classes(package: str) -> Tacotron2Classes:
    """``Tacotron2Module`` and ``Tacotron2DataModule`` on ``package`` (``"pytorch_lightning"`` or
    ``"lightning.pytorch"``), each named in :func:`flavour_module` and built once.

    Example:
        >>> import lightning.pytorch as L
        >>> Tacotron2Module, Tacotron2DataModule = tacotron2_classes("lightning.pytorch")
        >>> L.Trainer(max_steps=10).fit(Tacotron2Module(), datamodule=Tacotron2DataModule())
    """
    home = flavour_module(package)
    if not is_installed(package):
        raise ModuleNotFoundError(f"{home} needs the {package.split('.')[0]} package: pip install "
                                  "\"smart-tuner[lightning]\"", name=package)
    # The recipes' modules import this one, so they are imported here; and before the cache is asked, since
    # importing them may ask for the classes already (tacotron2_lightning.data does).
    from tacotron2_lightning.data.datamodule import Tacotron2DataModuleBase
    from tacotron2_lightning.module import Tacotron2ModuleBase

    return _build(package, Tacotron2ModuleBase, Tacotron2DataModuleBase)


@functools.cache
def _build(package: str, module_recipe: type, data_recipe: type) -> Tacotron2Classes:
    lightning = importlib.import_module(package)
    return Tacotron2Classes(_on_package(module_recipe, lightning.LightningModule, package),
                            _on_package(data_recipe, lightning.LightningDataModule, package))


def _on_package(recipe: type, base: type, package: str) -> type:
    name = recipe.__name__.removesuffix("Base")
    (other,) = (p for p in LIGHTNING_PACKAGES if p != package)
    doc = (f"{name} for a ``{package}.Trainer`` only (:class:`~{recipe.__module__}.{recipe.__name__}` on "
           f"``{package}.{base.__name__}``); for a ``{other}.Trainer`` import ``{flavour_module(other)}.{name}``. "
           f"Checkpoints of either load into either.\n\n{inspect.cleandoc(recipe.__doc__ or '')}")
    return type(name, (recipe, base), {"__module__": flavour_module(package), "__qualname__": name, "__doc__": doc})


def check_same_package(obj: Any, trainer: Any, what: str = "") -> None:
    """Raises :class:`LightningPackageError` when ``obj`` (a LightningModule or LightningDataModule) and ``trainer``
    come from different Lightning packages, naming the import to use; ``what`` says where ``obj`` came from (a
    config key)."""
    wanted, have = lightning_packages(trainer), lightning_packages(obj)
    if len(wanted) != 1 or not have or wanted <= have:
        return
    (package,) = wanted
    (other,) = have
    name = type(obj).__name__
    where = f"{what}: " if what else ""
    use = (f"use `from {flavour_module(package)} import {name}`" if name in Tacotron2Classes._fields
           else f"use the {package} {name}")
    raise LightningPackageError(
        f"{where}{name} is a {other} class, but the Trainer is a {package}.Trainer, which takes only {package} "
        f"modules and data: {use} (the same code; checkpoints load into either)")
