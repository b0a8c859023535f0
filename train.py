"""Train Tacotron2: ``python train.py [overrides]``; sweep: ``python train.py -m hparams=search``."""

import hydra
from omegaconf import DictConfig

from tuner_callbacks.objective_result import ObjectiveResult


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | tuple[float, ...] | ObjectiveResult:
    # The training stack (Lightning: seconds to import) loads here, in the process that trains: a sweep's driver
    # under the joblib, Ray or submitit launcher only composes configs and talks to the study, and starts at once.
    from tacotron2_lightning.app.objective import objective_value
    from tacotron2_lightning.app.training import train

    metrics, objects = train(cfg)
    return objective_value(cfg, metrics, objects)


if __name__ == "__main__":
    main()
