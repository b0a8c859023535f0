"""Composes ``conf/train.yaml`` for tests, as ``python train.py`` would, with a tiny model and data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"

# A model and data small enough for a training step in a fraction of a second.
TINY = [
    "model.model_config.symbols_embedding_dim=32", "model.model_config.encoder_embedding_dim=32",
    "model.model_config.attention_rnn_dim=64", "model.model_config.decoder_rnn_dim=64",
    "model.model_config.prenet_dim=32", "model.model_config.attention_dim=16",
    "model.model_config.attention_location_n_filters=4", "model.model_config.postnet_embedding_dim=32",
    "model.health_utterances=2", "data.builtin.size=12", "data.val_size=4", "data.batch_size=4",
    "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
    "callbacks.rich_progress_bar=null", "callbacks.validation_media.griffin_lim_iters=2",
]


def compose_train_config(root: Path, cache_dir: Path, overrides: Sequence[str] = (), tiny: bool = True) -> DictConfig:
    """The training config with everything written under ``root`` (outputs/, MLflow) and mels cached in
    ``cache_dir``; each call gets a new run folder ``outputs/runs/<task>/run<N>``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True, overrides=[*(TINY if tiny else []), *overrides])
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.log_dir = str(root / "outputs")
        run_number = len(list(root.glob("outputs/runs/*/*")))
        cfg.paths.output_dir = str(root / "outputs" / "runs" / cfg.task_name / f"run{run_number}")
        cfg.paths.cache_dir = str(cache_dir)
        del cfg.hydra
    return cfg


# Only the registry: no ModelCheckpoint is needed, and media would only slow the test. (validation_media is composed
# and then dropped because the tiny config tunes it; TrialPruning would want a real study's storage.)
ONLY_THE_REGISTRY = ["callbacks=[rich_progress_bar,validation_media,model_registry]", "callbacks.validation_media=null"]
