"""Train Tacotron2: ``python train.py [overrides]``; sweep: ``python train.py -m hparams=search``."""

import hydra
from omegaconf import DictConfig

from tacotron2_lightning.training import metric_value, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    metrics, _ = train(cfg)
    return metric_value(metrics, cfg.optimized_metric)


if __name__ == "__main__":
    main()
