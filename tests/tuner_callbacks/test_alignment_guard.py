"""AlignmentGuard on real training: the toy regression blown up by a learning-rate spike, and Tacotron2's attention.

The spike comes from a ParamScheduler (lr 0.1, then 30 for three steps at step 30, then 0.1 again): the weights
explode, and a linear model then needs far longer than the run to come back. The guard watches ``val/loss``
(healthy at or below 0.5) as it would watch an alignment metric.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger

from tests.helpers.bot_api_server import CHAT_ID, TOKEN, FakeBotApi
from tests.helpers.toy_module import ToyRegression, toy_loader, toy_trainer
from tuner_callbacks.alerts import TelegramAlerts
from tuner_callbacks.alignment_guard import AlignmentGuard
from tuner_callbacks.contract import TAG_RECOVERIES
from tuner_callbacks.param_scheduler import ParamScheduler
from tuner_callbacks.stop_reason import get_stop_reason
from tuner_callbacks.watch.rows import describe_state

HEALTHY = 0.5


def lr_spike(at: int = 30, steps: int | None = 3) -> ParamScheduler:
    """lr 0.1, then 30 from step ``at`` for ``steps`` steps (None: for good), then 0.1 again."""
    phases = [{"strategy": "constant", "start": 0.1, "steps": at}]
    if steps is None:
        phases.append({"strategy": "constant", "start": 30.0})
    else:
        phases += [{"strategy": "constant", "start": 30.0, "steps": steps}, {"strategy": "constant", "start": 0.1}]
    return ParamScheduler({"lr": {"target": "optimizer.lr", "strategy": "sequential", "phases": phases}},
                          log_changes=False)


class ValLosses(pl.Callback):
    def __init__(self):
        self.values: list[tuple[int, float]] = []

    def on_validation_end(self, trainer, pl_module):
        self.values.append((trainer.global_step, float(trainer.callback_metrics["val/loss"])))


def guard(**options) -> AlignmentGuard:
    return AlignmentGuard(**{"monitor": "val/loss", "mode": "min", "threshold": HEALTHY, "patience": 2,
                             "remedies": [{"lr_factor": 0.5}], **options})


def fit(tmp_path, callbacks, max_steps=60, module=None, ckpt_path=None, **options):
    torch.manual_seed(0)
    losses = ValLosses()
    module = module or ToyRegression(learning_rate=0.1)
    trainer = toy_trainer(tmp_path, [*callbacks, losses], max_steps=max_steps, val_check_interval=5, **options)
    trainer.fit(module, toy_loader(n=64), toy_loader(n=16, seed=1), ckpt_path=ckpt_path)
    return trainer, module, losses.values


def test_a_collapsed_run_is_rolled_back_and_recovers_while_the_same_run_without_the_guard_stays_broken(tmp_path):
    _, _, unguarded = fit(tmp_path, [lr_spike()])
    guarding = guard()
    trainer, _, guarded = fit(tmp_path, [lr_spike(), guarding])

    assert unguarded[-1][1] > 100 * HEALTHY  # the spike's damage outlasts the run
    assert guarded[6][1] > 1e6  # the same collapse at step 35...
    assert guarded[-1][1] < HEALTHY and guarded[-1][1] <= min(v for _, v in guarded[:6])  # ...rolled back, better on
    assert guarding.recoveries == 1 and trainer.global_step == 60 and get_stop_reason(trainer) is None
    (record,) = guarding.history
    assert (record["step"], record["restored_step"]) == (35, 30)
    assert "collapsed" in record["failure"] and "learning rate x0.5" in record["remedy"]


def test_a_healthy_run_is_never_touched(tmp_path):
    _, plain, plain_losses = fit(tmp_path, [])
    guarding = guard(snapshot_dir=tmp_path / "snapshots")
    _, guarded, guarded_losses = fit(tmp_path, [guarding])
    assert guarding.recoveries == 0 and guarded_losses == plain_losses
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), guarded.parameters(), strict=True))
    assert torch.load(tmp_path / "snapshots/healthy.pt", weights_only=False)["step"] == 60


def test_after_max_recoveries_the_run_stops_with_the_reason(tmp_path):
    guarding = guard(max_recoveries=2)
    trainer, _, _ = fit(tmp_path, [lr_spike(steps=None), guarding], max_steps=200)
    reason = get_stop_reason(trainer)
    assert guarding.recoveries == 2 and trainer.global_step < 200
    assert (reason.source, reason.criterion, reason.metric) == ("alignment_guard", "max_recoveries", "val/loss")
    assert "after 2 recoveries" in reason.message


def test_a_run_that_never_gets_healthy_fails_only_after_the_warm_up(tmp_path):
    guarding = guard(threshold=1e-9, warmup_steps=40, remedies=[{"attributes": {"loss_weight": 0.5},
                                                                 "hold_steps": 10}])
    trainer, module, _ = fit(tmp_path, [guarding], max_steps=50)
    # Failing from the first validation, but counted from step 40: recoveries at 45 (two failed checks from 40).
    assert [r["step"] for r in guarding.history] == [45]
    assert guarding.history[0]["restored_step"] is None  # nothing healthy to go back to: the remedy in place
    assert module.loss_weight == 0.5 and guarding.hold_until == 55  # held until step 55, beyond the run


def test_held_attributes_are_given_back_after_the_hold(tmp_path):
    guarding = guard(remedies=[{"attributes": {"loss_weight": 3.0}, "hold_steps": 10}])
    seen = []

    class Watch(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((trainer.global_step, pl_module.loss_weight))

    fit(tmp_path, [lr_spike(), guarding, Watch()])
    assert dict(seen)[35] == 1.0 and dict(seen)[36] == 3.0 and dict(seen)[45] == 3.0 and dict(seen)[46] == 1.0


def test_a_recovery_reaches_mlflow_the_alerts_and_watch(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = MLFlowLogger(experiment_name="guard", tracking_uri=uri, artifact_location=str(tmp_path / "mlruns"))
    with FakeBotApi() as api:
        alerts = TelegramAlerts(token=TOKEN, chat_id=CHAT_ID, base_url=api.base_url, min_interval_s=0.0,
                                backoff_s=0.05, check_timeout_s=2.0, timeout_s=2.0, flush_timeout_s=5.0,
                                every_n_validations=100)
        fit(tmp_path, [lr_spike(), guard(), alerts], logger=logger)
    run = MlflowClient(tracking_uri=uri).get_run(logger.run_id)
    assert run.data.tags[TAG_RECOVERIES] == "1" and "restored step 30" in run.data.tags["alignment_guard.last"]
    history = MlflowClient(tracking_uri=uri).get_metric_history(logger.run_id, "alignment_guard/recoveries")
    assert [(m.step, m.value) for m in history] == [(35, 1.0)]
    rolled_back = [r.text for r in api.sent if "rolled back" in r.text]
    assert len(rolled_back) == 1 and "step 35" in rolled_back[0] and "recovery 1/2" in rolled_back[0]
    assert describe_state(run.info.status, run.data.tags)[0] == "finished, rolled back 1x"


class AlertSink:
    """An alert callback as AlignmentGuard's ``alerts`` takes one: anything with ``send(alert)``."""

    def __init__(self):
        self.sent = []

    def send(self, alert):
        self.sent.append(alert)


def test_recoveries_go_to_the_alert_callbacks_given_and_to_no_other(tmp_path):
    given, other = AlertSink(), TelegramAlerts(token=None, chat_id=None)  # no token: alerts go to the log
    sent_by_other = []
    other.send = sent_by_other.append  # in the Trainer, but not given: the guard must not look it up
    fit(tmp_path, [lr_spike(), guard(alerts=[given]), other])
    assert len(given.sent) == 1 and "rolled back" in given.sent[0].title
    assert sent_by_other and not [alert for alert in sent_by_other if alert.kind == "recovery"]


@pytest.mark.parametrize("alerts", ["telegram", [object()], {"send": print}])
def test_alerts_that_cannot_send_are_refused_naming_the_argument(alerts):
    with pytest.raises(ValueError, match="`alerts` must be a list of alert callbacks"):
        guard(alerts=alerts)


def test_a_resumed_run_rolls_back_to_the_snapshot_taken_before_it_was_stopped(tmp_path):
    snapshots = tmp_path / "snapshots"
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    fit(tmp_path, [guard(snapshot_dir=snapshots), checkpoint], max_steps=30, enable_checkpointing=True)
    resumed = guard(snapshot_dir=snapshots)
    fit(tmp_path, [lr_spike(), resumed, ModelCheckpoint(dirpath=tmp_path / "ckpt2")], max_steps=40,
        ckpt_path=str(tmp_path / "ckpt/last.ckpt"), enable_checkpointing=True)
    assert [r["restored_step"] for r in resumed.history] == [30]


def test_state_round_trips():
    original = guard()
    original.recoveries, original.failed_checks, original.last_healthy_value = 1, 1, 0.2
    original.hold_until, original.held, original.previous = 90, {"loss_weight": 2.0}, {"loss_weight": 1.0}
    restored = guard()
    restored.load_state_dict(original.state_dict())
    assert restored.state_dict() == original.state_dict()


@pytest.mark.parametrize(("options", "named"), [
    ({"mode": "up"}, "`mode`"),
    ({"patience": 0}, "`patience`"),
    ({"collapse_drop": 1.5}, "`collapse_drop`"),
    ({"remedies": []}, "`remedies`"),
    ({"remedies": [{"lr_factr": 0.5}]}, "`remedies[0]`: unknown key(s) ['lr_factr']"),
    ({"remedies": [{"lr_factor": -1}]}, "remedies[0].lr_factor"),
    ({"remedies": [{"attributes": {"x": 1}}]}, "remedies[0].hold_steps"),
])
def test_bad_options_are_named(options, named):
    with pytest.raises(ValueError) as error:
        guard(**options)
    assert named in str(error.value)


def test_a_remedy_naming_a_missing_attribute_fails_at_the_start(tmp_path):
    with pytest.raises(AttributeError, match=r"remedies\[0\].attributes: ToyRegression has no attribute 'guided'"):
        fit(tmp_path, [guard(remedies=[{"attributes": {"guided": 1.0}, "hold_steps": 5}])], max_steps=1)


def test_tacotron2s_attention_can_be_reinitialised(tmp_path, tiny):
    from tacotron2_lightning.module import Tacotron2Module
    from tuner_callbacks.alignment_guard import _reinitialize

    module = Tacotron2Module(tiny)
    before = [p.clone() for p in module.model.decoder.attention_layer.parameters()]
    others = [p.clone() for p in module.model.encoder.parameters()]
    assert _reinitialize(module, "model.decoder.attention_layer") > 0
    after = list(module.model.decoder.attention_layer.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(others, module.model.encoder.parameters(), strict=True))


def test_guard_is_exported_and_keys_its_state_by_the_metric_it_watches():
    from tuner_callbacks import AlignmentGuard as Exported

    assert Exported is AlignmentGuard
    score, stops = guard(monitor="val/alignment_score"), guard(monitor="val/gate_stop_rate")
    assert score.state_key != stops.state_key and "val/gate_stop_rate" in stops.state_key
    score.recoveries, score.history = 1, [{"step": 5}]
    restored = guard(monitor="val/alignment_score")
    restored.load_state_dict(score.state_dict())
    assert (restored.recoveries, restored.history) == (1, [{"step": 5}])
    score.history.append({"step": 9})  # the saved state is a copy
    assert restored.history == [{"step": 5}]


def test_state_written_under_the_old_class_name_key_is_adopted():
    state = guard().state_dict() | {"recoveries": 2}
    checkpoint = {"callbacks": {"AlignmentGuard": state}}
    resumed = guard()
    resumed.on_load_checkpoint(None, None, checkpoint)
    assert list(checkpoint["callbacks"]) == [resumed.state_key]
    resumed.load_state_dict(checkpoint["callbacks"][resumed.state_key])
    assert resumed.recoveries == 2
