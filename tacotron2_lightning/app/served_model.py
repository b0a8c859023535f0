"""Tacotron2 as an MLflow pyfunc model: a DataFrame of texts in, Griffin-Lim audio with stop information out.

This is the model that ``mlflow.pyfunc.load_model("models:/tacotron2-train@champion")`` returns and that
``mlflow models serve`` answers ``/invocations`` with. The registry saves it (see
:mod:`tacotron2_lightning.app.pyfunc_factory`) with the version's checkpoint and data config as artifacts; it
synthesises as ``python -m tacotron2_lightning.app.synthesize`` does.

Input: a DataFrame with a ``text`` column, one utterance a row. Output: a DataFrame with a row per input row:

* ``audio``: the float32 samples in [-1, 1];
* ``sampling_rate``: samples per second (the checkpoint's audio settings);
* ``num_samples``, ``num_frames``: the audio's length, and the mel frames it was made from;
* ``stopped``: ``True`` when the stop gate fired, ``False`` when decoding hit ``max_decoder_steps`` first (the
  audio is then probably cut off or babbling).

Params (optional, per call): ``max_decoder_steps`` (default: the model's cap), ``griffin_lim_iters`` and ``seed``
(the prenet's dropout stays on at inference, as in NVIDIA's code; a seed makes the output repeatable).

Example:
    >>> model = mlflow.pyfunc.load_model("models:/tacotron2-train@champion")
    >>> result = model.predict(pd.DataFrame({"text": ["Hello world."]}), params={"seed": 0})
    >>> soundfile.write("hello.wav", result.audio[0], result.sampling_rate[0])
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from tacotron2_lightning.synthesis import SynthesisInputError, load_for_synthesis, synthesize, text_to_ids
from tuner_callbacks.registry.pyfunc_saving import CHECKPOINT_ARTIFACT, DATA_CONFIG_ARTIFACT

log = logging.getLogger(__name__)

TEXT_COLUMN = "text"
OUTPUT_COLUMNS = ("audio", "sampling_rate", "num_samples", "num_frames", "stopped")
# The params a call may set; a saved model's signature carries the defaults the registry was configured with.
DEFAULT_PARAMS: dict[str, int | None] = {"max_decoder_steps": None, "griffin_lim_iters": 60, "seed": None}


class SynthesisRequestError(MlflowException):
    """Input or params the model refuses; the message names the row, column or param. A served model answers
    it with HTTP 400 and the message."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def input_texts(model_input: Any, cleaners: list[str]) -> list[str]:
    """The ``text`` column as a list, every row checked (a cleaner accepts it, something is left to say) before
    any is synthesised.

    Raises:
        SynthesisRequestError: not a DataFrame, no ``text`` column, or a row that is not a string or has nothing
            to synthesise; names the row.
    """
    if not isinstance(model_input, pd.DataFrame):
        raise SynthesisRequestError(f"Tacotron2 expects a pandas DataFrame with a {TEXT_COLUMN!r} column, got a "
                                    f"{type(model_input).__name__}")
    if TEXT_COLUMN not in model_input.columns:
        raise SynthesisRequestError(f"The input has no {TEXT_COLUMN!r} column to synthesise; its columns: "
                                    f"{[str(c) for c in model_input.columns]}")
    texts = list(model_input[TEXT_COLUMN])
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise SynthesisRequestError(f"Row {row} of column {TEXT_COLUMN!r} must be a string, got {text!r}")
        try:
            text_to_ids(text, cleaners)
        except SynthesisInputError as error:
            raise SynthesisRequestError(f"Row {row} of column {TEXT_COLUMN!r}: {error}") from error
    return texts


def synthesis_params(params: Mapping[str, Any] | None) -> dict[str, int | None]:
    """``params`` over :data:`DEFAULT_PARAMS`, checked.

    Raises:
        SynthesisRequestError: an unknown param, or a value out of range; names it.
    """
    given = {key: value for key, value in (params or {}).items() if value is not None}
    unknown = sorted(set(given) - set(DEFAULT_PARAMS))
    if unknown:
        raise SynthesisRequestError(f"Unknown params {unknown}; Tacotron2 takes {sorted(DEFAULT_PARAMS)}")
    merged = {**DEFAULT_PARAMS, **given}
    for name, value in merged.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer)):
            raise SynthesisRequestError(f"Param {name!r} must be an integer, got {value!r}")
    if merged["max_decoder_steps"] is not None and merged["max_decoder_steps"] < 1:
        raise SynthesisRequestError(f"Param 'max_decoder_steps' must be >= 1, got {merged['max_decoder_steps']}")
    if merged["griffin_lim_iters"] < 0:
        raise SynthesisRequestError(f"Param 'griffin_lim_iters' must be >= 0, got {merged['griffin_lim_iters']}")
    return merged


class Tacotron2PythonModel(mlflow.pyfunc.PythonModel):
    """Loads the version's checkpoint once, then synthesises each row of each request (one request at a time)."""

    def load_context(self, context: Any) -> None:
        self.module = load_for_synthesis(context.artifacts[CHECKPOINT_ARTIFACT])
        self._lock = threading.Lock()  # a server may call predict from several threads; the RNG is shared
        data_config = context.artifacts.get(DATA_CONFIG_ARTIFACT)
        if data_config is not None:
            _warn_if_audio_differs(self.module, Path(data_config))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        texts = input_texts(model_input, list(self.module.text_cleaners))
        options = synthesis_params(params)
        sampling_rate = self.module.audio.sampling_rate
        rows = []
        with self._lock, torch.random.fork_rng(devices=[]):  # a seed must not reseed the server's own RNG
            if options["seed"] is not None:
                torch.manual_seed(int(options["seed"]))
            for text in texts:
                wav, mel, _, stopped = synthesize(self.module, text, max_decoder_steps=options["max_decoder_steps"],
                                                  griffin_lim_iters=int(options["griffin_lim_iters"]))
                audio = wav.numpy().astype(np.float32, copy=False)
                rows.append((audio, sampling_rate, audio.size, mel.size(1), stopped))
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def _warn_if_audio_differs(module: Any, data_config: Path) -> None:
    """The model synthesises with its checkpoint's audio settings; says so if the stored data config disagrees."""
    import yaml

    audio = (yaml.safe_load(data_config.read_text()) or {}).get("audio") or {}
    own = asdict(module.audio)
    differing = {key: (value, own[key]) for key, value in audio.items() if key in own and value != own[key]}
    if differing:
        log.warning("The data config %s has other audio settings than the checkpoint (data, checkpoint): %s; "
                    "synthesising with the checkpoint's", data_config, differing)
