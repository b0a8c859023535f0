"""Exports a registered checkpoint as NVIDIA's state_dict file, a Lightning checkpoint or a TorchScript module.

* ``nvidia``: ``{'state_dict': ...}`` with exactly NVIDIA's keys (our module's ``model.`` prefix removed), as
  NVIDIA's ``inference.ipynb`` loads it: ``model.load_state_dict(torch.load(path)['state_dict'])``. NVIDIA's
  code builds the model from its ``hparams.py``, so the sizes there must match the exported model's (the
  default for a model trained with NVIDIA's sizes, ``conf/model/nvidia.yaml``).
* ``lightning``: the registered weights-only Lightning checkpoint, with ``hyper_parameters``.
* ``torchscript``: :class:`~tacotron2_lightning.torchscript.Tacotron2Inference`, compiled.

ONNX is not offered: exporting needs the ``onnx``/``onnxscript`` packages, which the project does not depend
on, and a data-dependent decoder loop that TorchScript handles without them.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from tuner_callbacks.registry.client import RegistryError

log = logging.getLogger(__name__)

FORMATS = ("nvidia", "lightning", "torchscript")


def export_checkpoint(checkpoint: str | Path, export_format: str, out: str | Path) -> Path:
    """Writes ``checkpoint`` (a Lightning checkpoint of ``Tacotron2Module``) to ``out`` in ``export_format``.

    Every format first loads the checkpoint into a model, so a corrupt or incompatible file fails here with a
    :class:`~tacotron2_lightning.checkpoint.CheckpointError` naming it, not later in someone else's code.

    Example:
        >>> export_checkpoint("model.ckpt", "nvidia", "tacotron2_statedict.pt")
    """
    from tacotron2_lightning.synthesis import load_for_synthesis

    if export_format not in FORMATS:
        raise RegistryError(f"Unknown export format {export_format!r}; valid: {', '.join(FORMATS)}")
    out = Path(out)
    module = load_for_synthesis(checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    if export_format == "nvidia":
        # Our Tacotron2 is NVIDIA's module for module, so its own state_dict has NVIDIA's keys.
        import torch  # here: the registry's `--help` lists this module's formats without PyTorch's import

        torch.save({"state_dict": module.model.state_dict()}, out)
    elif export_format == "lightning":
        shutil.copyfile(checkpoint, out)
    else:
        from tacotron2_lightning.torchscript import script

        script(module.model).save(str(out))
    log.info("Exported %s as %s to %s (%d bytes)", checkpoint, export_format, out, out.stat().st_size)
    return out
