"""Loading NVIDIA's and our own Tacotron2 checkpoints into :class:`~tacotron2_lightning.model.Tacotron2`.

Accepted layouts, all reduced to a plain state_dict of the model:

* NVIDIA's published ``tacotron2_statedict.pt``: ``{'state_dict': ...}``;
* NVIDIA training checkpoints: ``{'iteration', 'state_dict', 'optimizer', 'learning_rate'}``;
* DeepLearningExamples files: ``{'state_dict', 'config'}`` with keys that may carry ``module.``;
* Lightning checkpoints of :class:`~tacotron2_lightning.module.Tacotron2Module` (keys under ``model.``);
* a bare state_dict.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

# Prefixes that wrappers add in front of the model's own keys: DDP/DataParallel, our LightningModule.
_WRAPPER_PREFIXES = ("module.", "model.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names file and keys."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Reads a checkpoint file into a dict, safely (``weights_only``) whenever the file allows it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file not found: {path}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Older NVIDIA checkpoints pickle numpy scalars or hparams objects; only trusted files belong here.
        log.warning("%s holds more than tensors; loading it with weights_only=False (trust the file)", path)
        try:
            content = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:
            raise CheckpointError(f"Cannot read checkpoint {path}: {error}") from error
    except Exception as error:
        raise CheckpointError(f"Cannot read checkpoint {path}: {type(error).__name__}: {error}") from error
    if not isinstance(content, Mapping):
        raise CheckpointError(f"Checkpoint {path} holds a {type(content).__name__}, expected a dict")
    return dict(content)


def extract_state_dict(checkpoint: Mapping[str, Any], source: str = "checkpoint") -> dict[str, Tensor]:
    """Returns the model's state_dict from any accepted checkpoint layout, wrapper prefixes removed."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{source} has no state_dict (top-level keys: {sorted(checkpoint)[:10]})")
    non_tensors = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if non_tensors:
        raise CheckpointError(f"{source}: state_dict entries that are not tensors: {non_tensors[:5]}")
    state = dict(state)
    for prefix in _WRAPPER_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def _first(keys: list[str], count: int = 8) -> str:
    """A short listing: a model that does not fit at all would otherwise produce a line of 80 keys."""
    return str(keys[:count]) + (f" and {len(keys) - count} more" if len(keys) > count else "")


def load_nvidia_checkpoint(
    model: nn.Module,
    path_or_dict: str | Path | Mapping[str, Any],
    ignore_layers: Iterable[str] = (),
    strict: bool = True,
) -> dict[str, list[str]]:
    """Loads a Tacotron2 checkpoint into ``model``, checking every key and shape first.

    Args:
        model: a :class:`~tacotron2_lightning.model.Tacotron2` (or anything with the same keys).
        path_or_dict: a checkpoint file or an already loaded checkpoint dict / state_dict.
        ignore_layers: keys (or module prefixes such as ``"embedding"``) whose weights stay as the model
            has them: NVIDIA's warm start, e.g. with a different symbol set.
        strict: raise when a key is missing, unexpected or mis-shaped; otherwise load what fits and warn.

    Returns:
        ``{"missing": [...], "unexpected": [...], "mismatched": [...], "ignored": [...]}`` by key name.

    Example:
        >>> load_nvidia_checkpoint(model, "tacotron2_statedict.pt", ignore_layers=["embedding.weight"])
    """
    source = str(path_or_dict) if isinstance(path_or_dict, (str, Path)) else "checkpoint dict"
    checkpoint = read_checkpoint(path_or_dict) if isinstance(path_or_dict, (str, Path)) else path_or_dict
    loaded = extract_state_dict(checkpoint, source)
    own = model.state_dict()

    ignore = list(ignore_layers)
    unknown_ignores = [n for n in ignore if not any(k == n or k.startswith(n + ".") for k in own)]
    if unknown_ignores:
        raise CheckpointError(f"ignore_layers names no parameter of the model: {unknown_ignores}")
    ignored = sorted(k for k in own if any(k == n or k.startswith(n + ".") for n in ignore))

    report = {
        "missing": sorted(k for k in own if k not in loaded and k not in ignored),
        "unexpected": sorted(k for k in loaded if k not in own and k not in ignored),
        "mismatched": sorted(
            f"{k}: checkpoint {tuple(loaded[k].shape)} vs model {tuple(own[k].shape)}"
            for k in own
            if k in loaded and k not in ignored and loaded[k].shape != own[k].shape
        ),
        "ignored": ignored,
    }
    problems = [f"{kind} keys ({len(report[kind])}): {_first(report[kind])}"
                for kind in ("missing", "unexpected", "mismatched") if report[kind]]
    if problems and strict:
        only_embedding = [m.split(":")[0] for m in report["mismatched"]] == ["embedding.weight"] and len(problems) == 1
        hint = " (a different symbol set? pass ignore_layers=['embedding.weight'])" if only_embedding else ""
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems) + hint)
    for problem in problems:
        log.warning("%s: %s", source, problem)

    mismatched_keys = {m.split(":")[0] for m in report["mismatched"]}
    usable = {k: v for k, v in loaded.items() if k in own and k not in ignored and k not in mismatched_keys}
    model.load_state_dict({**own, **usable}, strict=True)
    return report
