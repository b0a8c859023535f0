"""ModelRegistry in the training app: trials of a sweep register their models, and the alias ends on the best."""

from __future__ import annotations

import pytest

from tacotron2_lightning.app.training import train
from tacotron2_lightning.synthesis import load_for_synthesis
from tests.helpers.train_configs import ONLY_THE_REGISTRY
from tuner_callbacks.contract import TAG_STUDY, TAG_TRIAL
from tuner_callbacks.registry import Registry
from tuner_callbacks.registry.tags import git_commit


def run_trial(make_cfg, number: int, learning_rate: float) -> dict:
    cfg = make_cfg([*ONLY_THE_REGISTRY, f"trial.number={number}", "trial.study_name=s",
                    f"model.learning_rate={learning_rate}", "trainer.max_steps=2"])
    return train(cfg)[1]["summary"]


@pytest.mark.parametrize("better_first", [True, False], ids=["better-first", "better-second"])
def test_sweep_of_two_trials_ends_with_the_alias_on_the_better_trial(make_cfg, tmp_path, better_first):
    # A learning rate of 1e-9 leaves the model as initialised: clearly worse after 4 steps than 1e-3.
    rates = (1e-3, 1e-9) if better_first else (1e-9, 1e-3)
    for number, rate in enumerate(rates):
        run = run_trial(make_cfg, number, rate)
    registry = Registry(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    versions = registry.versions("tacotron2-train")
    champion = registry.resolve("tacotron2-train@champion")
    better_trial = str(rates.index(1e-3))
    assert champion.tags[TAG_TRIAL] == better_trial and champion.tags[TAG_STUDY] == "s"
    assert champion.version == versions[0].version  # the best of both trials
    assert float(champion.tags["monitor_value"]) == min(float(v.tags["monitor_value"]) for v in versions)
    assert {v.tags[TAG_TRIAL] for v in versions} == {"0", "1"}
    # Tags: the metrics of that validation, the hyper-parameters, the step and where it came from.
    assert champion.tags["hparam.learning_rate"] == "0.001"
    assert champion.tags["hparam.model_config/decoder_rnn_dim"] == "64"
    assert float(champion.tags["metric.val/loss"]) == float(champion.tags["monitor_value"])
    assert "metric.val/alignment_score" in champion.tags and champion.tags["monitor"] == "val/loss"
    assert champion.tags["git_commit"] == git_commit()
    # The artifacts went to the trial's own MLflow run, and the checkpoint rebuilds the model.
    last_run_versions = [v for v in versions if v.run_id == run["mlflow_run_id"]]
    assert last_run_versions and all(v.tags[TAG_TRIAL] == "1" for v in last_run_versions)
    module = load_for_synthesis(registry.download(champion, tmp_path / "champion"))
    assert module.config.decoder_rnn_dim == 64
    assert (tmp_path / "champion" / "data.yaml").read_text().startswith("_target_: tacotron2_lightning")
