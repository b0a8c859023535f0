"""Checking a composed Hydra config before anything is built, so mistakes fail in a second, naming the key.

Hydra already refuses overrides of keys that do not exist (``model.lr=1`` without ``+``). This adds what it
cannot know: for every node with a ``_target_``, that each key is an argument of the target, that simple
values (int, float, bool, str, and optional ones) have the annotated type, that no required ``???`` value is
left, that every Lightning class comes from the package ``lightning`` names, and that the data and checkpoint
paths exist.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from tacotron2_lightning.lightning_compat import (
    LIGHTNING_PACKAGES,
    Tacotron2Classes,
    flavour_module,
    is_installed,
    lightning_packages,
)


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and what would be valid."""


_SIMPLE = (bool, int, float, str)


def _allowed_types(annotation: Any) -> tuple[type, ...] | None:
    """The simple types an annotation admits, or None when it is not a simple annotation we check."""
    if annotation in _SIMPLE:
        return (annotation,)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if all(m in _SIMPLE or m is type(None) for m in members):
            return tuple(members)
    return None


def _type_ok(value: Any, allowed: tuple[type, ...]) -> bool:
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return int in allowed or float in allowed
    if isinstance(value, float):
        return float in allowed
    return isinstance(value, str) and str in allowed


def _signature_hints(target: Any) -> tuple[inspect.Signature, dict[str, Any]] | None:
    init = target.__init__ if inspect.isclass(target) else target
    try:
        signature = inspect.signature(init)
    except (TypeError, ValueError):
        return None
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # unresolvable forward references in third-party code: check names only
        hints = {}
    return signature, hints


def _check_target_node(node: DictConfig, key: str) -> None:
    target_name = node["_target_"]
    try:
        target = get_object(target_name)
    except Exception as error:
        raise ConfigError(f"{key}._target_: cannot import {target_name!r} ({error})") from error
    found = _signature_hints(target)
    if found is None:
        return
    signature, hints = found
    parameters = {n: p for n, p in signature.parameters.items() if n != "self"}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name in node:
        if str(name).startswith("_"):
            continue
        if name not in parameters:
            if takes_any:
                continue
            valid = sorted(n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL)
            raise ConfigError(f"{key}.{name}: not an argument of {target_name}; valid keys are {valid}")
        allowed = _allowed_types(hints.get(name))
        if allowed is None:
            continue
        value = node[name]
        if isinstance(value, (DictConfig, ListConfig)) or not _type_ok(value, allowed):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
            raise ConfigError(f"{key}.{name}: expected {names}, got {value!r} ({type(value).__name__})")


def _walk(node: Any, key: str) -> None:
    if isinstance(node, DictConfig):
        if "_target_" in node:
            _check_target_node(node, key)
        for name in node:
            _walk(node[name], f"{key}.{name}" if key else str(name))
    elif isinstance(node, ListConfig):
        for index, item in enumerate(node):
            _walk(item, f"{key}[{index}]")


def _check_paths(cfg: DictConfig) -> None:
    data = cfg.get("data") or {}
    for name in ("path", "train_filelist", "val_filelist"):
        value = data.get(name)
        if value is not None and not Path(value).expanduser().exists():
            raise ConfigError(f"data.{name}: {value!r} does not exist")
    for name in ("init_from", "ckpt_path"):
        value = cfg.get(name)
        if value is not None and value != "last" and not str(value).startswith("models:/") \
                and not Path(value).expanduser().is_file():
            raise ConfigError(f"{name}: checkpoint file {value!r} does not exist")


def _lightning_packages_of(target: str) -> frozenset[str]:
    """The Lightning packages a ``_target_`` builds on: read from its class, or from its name when it cannot be
    imported (``lightning.pytorch.Trainer`` without ``lightning``)."""
    try:
        found = get_object(target)
    except Exception:  # reported by _walk, naming the key, unless this name says enough
        found = None
    if isinstance(found, type):
        return lightning_packages(found)
    name = target.removeprefix("tacotron2_lightning.flavours.")
    if name.startswith("pytorch_lightning."):
        return frozenset({"pytorch_lightning"})
    if name.startswith("lightning."):  # lightning.pytorch.Trainer, or its alias lightning.Trainer
        return frozenset({"lightning.pytorch"})
    return frozenset()


def _check_lightning_package(cfg: DictConfig) -> None:
    """One Lightning package for everything: a Trainer takes only its own package's modules and callbacks."""
    package = cfg.get("lightning", "pytorch_lightning")
    if package not in LIGHTNING_PACKAGES:
        raise ConfigError(f"lightning: {package!r} is not a Lightning package; use one of {list(LIGHTNING_PACKAGES)}")
    if not is_installed(package):
        raise ConfigError(f"lightning: {package!r} is not installed (pip install \"smart-tuner[lightning]\")")
    for group in ("trainer", "model", "data", "logger", "callbacks"):
        nodes = [(group, cfg.get(group))]
        if group in ("logger", "callbacks") and isinstance(cfg.get(group), DictConfig):
            nodes = [(f"{group}.{name}", node) for name, node in cfg[group].items()]
        for key, node in nodes:
            if not isinstance(node, DictConfig) or "_target_" not in node:
                continue
            target = str(node["_target_"])
            used = _lightning_packages_of(target)
            if not used or package in used:
                continue
            (other,) = used
            name = target.rpartition(".")[2]
            if target.startswith("tacotron2_lightning.") and name in Tacotron2Classes._fields:
                raise ConfigError(f"{key}._target_: {target!r} is the {other} {name} but lightning={package}; use "
                                  f"_target_: {flavour_module(package)}.{name}, or "
                                  f"tacotron2_lightning.flavours.${{lightning}}.{name} to follow the lightning key")
            raise ConfigError(f"{key}._target_: {target!r} is from {other} but lightning={package}; "
                              f"set lightning={other} to switch the whole run (the Trainer, model, data, "
                              "loggers and callbacks must come from one package)")


def validate_config(cfg: DictConfig) -> None:
    """Raises :class:`ConfigError` naming the first key that cannot work. Resolves interpolations."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"Required value(s) missing: {missing} (set them, e.g. {missing[0]}=...)")
    try:
        OmegaConf.to_container(cfg, resolve=True)
        _check_lightning_package(cfg)
        _walk(cfg, "")
    except ConfigError:
        raise
    except Exception as error:  # interpolation and resolver errors from OmegaConf name their key
        raise ConfigError(f"Invalid config: {error}") from error
    _check_paths(cfg)
