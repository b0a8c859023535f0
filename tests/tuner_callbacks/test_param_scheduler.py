"""ParamScheduler and its schedules: curves (also against torch's lr schedulers), plateau tables, a real Trainer
with a toy module and with Tacotron2, checkpoint resume, and errors that name the bad input."""

from __future__ import annotations

import csv
import doctest
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.loggers import CSVLogger

from tacotron2_lightning.module import Tacotron2Module
from tests.helpers.batches import repeated_loader, synthetic_batch, tiny_config
from tests.helpers.toy_module import CollectingLogger, ToyRegression, toy_loader, toy_trainer
from tuner_callbacks import param_scheduler as param_scheduler_module
from tuner_callbacks import schedule_curves as schedule_curves_module
from tuner_callbacks.param_scheduler import ParamScheduler
from tuner_callbacks.schedule_curves import (
    Constant,
    Cosine,
    Exponential,
    Linear,
    Plateau,
    Sequential,
    Step,
    Warmup,
    build_schedule,
)

CONFIG = Path(__file__).parents[2] / "conf" / "callbacks" / "param_scheduler.yaml"


@pytest.mark.parametrize(("schedule", "expected"), [
    (Constant(2.0), {0: 2.0, 100: 2.0}),
    (Linear(1.0, 0.0, 4), {0: 1.0, 1: 0.75, 4: 0.0, 9: 0.0}),
    (Exponential(2.0, gamma=0.5), {0: 2.0, 1: 1.0, 3: 0.25}),
    (Exponential(1.0, end=0.01, total_steps=2), {0: 1.0, 1: 0.1, 2: 0.01, 5: 0.01}),
    (Cosine(5.0, 600), {0: 5.0, 150: 5.0 * (2 + 2 ** 0.5) / 4, 300: 2.5, 600: 0.0, 900: 0.0}),
    (Cosine(2.0, 4, end=1.0), {0: 2.0, 2: 1.5, 4: 1.0, 5: 1.0}),
    (Step(1.0, step_size=3, gamma=0.5), {0: 1.0, 2: 1.0, 3: 0.5, 6: 0.25}),
    (Warmup(1.0, warmup_steps=4, total_steps=8, warmup_start=0.2), {0: 0.2, 2: 0.6, 4: 1.0, 6: 0.5, 8: 0.0, 20: 0.0}),
    (Sequential(((Constant(3.0), 2), (Linear(3.0, 1.0, 2), None))), {0: 3.0, 1: 3.0, 2: 3.0, 3: 2.0, 4: 1.0, 9: 1.0}),
    (Sequential(((Linear(0.0, 1.0, 2), 2), (Linear(1.0, 3.0, 2), 2))), {1: 0.5, 2: 1.0, 3: 2.0, 4: 3.0, 10: 3.0}),
    # The config's Tacotron2 use case: hold 5.0 for 300 steps, then cosine to 0 by step 900.
    (build_schedule({"strategy": "cosine", "start": 5.0, "total_steps": 600, "delay_steps": 300}),
     {0: 5.0, 299: 5.0, 300: 5.0, 600: 2.5, 900: 0.0, 2000: 0.0}),
    # Sequential from a config: the cosine starts where the warmup ended, and runs its total_steps from there.
    (build_schedule({"strategy": "sequential", "phases": [{"strategy": "linear", "start": 0.0, "end": 1.0, "steps": 10},
                                                          {"strategy": "cosine", "total_steps": 10}]}),
     {0: 0.0, 5: 0.5, 10: 1.0, 15: 0.5, 20: 0.0, 30: 0.0}),
    (build_schedule({"strategy": "warmup", "warmup_steps": 2, "total_steps": 4}, start=8.0), {1: 4.0, 2: 8.0, 4: 0.0}),
], ids=lambda value: type(value).__name__ if not isinstance(value, dict) else "")
def test_schedule_values(schedule, expected):
    assert {step: schedule(step) for step in expected} == pytest.approx(expected, abs=1e-12)


def _torch_curve(make_scheduler, base: float, steps: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = make_scheduler(optimizer)
    curve = []
    for _ in range(steps):
        curve.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return curve


S = torch.optim.lr_scheduler


@pytest.mark.parametrize(("ours", "theirs", "base", "steps"), [
    (Linear(0.2, 1.0, 5), lambda o: S.LinearLR(o, start_factor=0.2, end_factor=1.0, total_iters=5), 1.0, 12),
    (Linear(0.5, 0.05, 8), lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=8), 0.5, 12),
    (Exponential(2.0, gamma=0.9), lambda o: S.ExponentialLR(o, gamma=0.9), 2.0, 30),
    (Step(0.5, step_size=3, gamma=0.3), lambda o: S.StepLR(o, step_size=3, gamma=0.3), 0.5, 20),
    (Cosine(2.0, 10, end=0.1), lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.1), 2.0, 11),  # torch rises after
    (Warmup(1.0, warmup_steps=4, total_steps=10, warmup_start=0.1),
     lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=4), S.CosineAnnealingLR(o, T_max=6)],
                              milestones=[4]), 1.0, 11),
], ids=["linear-up", "linear-down", "exponential", "step", "cosine", "warmup"])
def test_curves_equal_torch_lr_schedulers(ours, theirs, base, steps):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's deprecation notes about step(epoch)
        expected = _torch_curve(theirs, base, steps)
    assert [ours(step) for step in range(steps)] == pytest.approx(expected, rel=1e-9, abs=1e-12)


PLATEAU_TABLE = [
    ("flat", [1.0] * 9, {"patience": 2, "factor": 0.5}, [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]),
    ("cooldown", [1.0] * 9, {"patience": 1, "factor": 0.5, "cooldown": 2},
     [1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]),
    ("minimum", [1.0] * 5, {"patience": 0, "factor": 0.1, "min_value": 0.05}, [1, 0.1, 0.05, 0.05, 0.05]),
    ("improving", [5.0, 4.0, 3.0, 2.0, 1.0], {"patience": 0}, [1, 1, 1, 1, 1]),
    ("tiny-gains", [1.0, 0.99999, 0.99998, 0.99997], {"patience": 1, "factor": 0.5}, [1, 1, 0.5, 0.5]),
    ("abs-threshold", [1.0, 0.95, 0.9, 0.85], {"patience": 0, "factor": 0.5, "threshold": 0.1,
                                               "threshold_mode": "abs"}, [1, 0.5, 0.25, 0.25]),
    ("max-rising", [1.0, 2.0, 3.0], {"mode": "max", "patience": 0}, [1, 1, 1]),
    ("max-falling", [3.0, 2.0, 1.0], {"mode": "max", "patience": 0, "factor": 0.5}, [1, 0.5, 0.25]),
]


@pytest.mark.parametrize(("metrics", "kwargs", "expected"), [row[1:] for row in PLATEAU_TABLE],
                         ids=[row[0] for row in PLATEAU_TABLE])
def test_plateau_table_and_torch(metrics, kwargs, expected):
    plateau = Plateau(start=1.0, monitor="val/loss", **kwargs)
    assert [plateau.update(m) for m in metrics] == pytest.approx(expected)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    torch_kwargs = {("min_lr" if k == "min_value" else k): v for k, v in kwargs.items()}
    reference = S.ReduceLROnPlateau(optimizer, **torch_kwargs)
    torch_values = []
    for metric in metrics:
        reference.step(metric)
        torch_values.append(optimizer.param_groups[0]["lr"])
    assert torch_values == pytest.approx(expected)


def test_plateau_state_round_trip():
    plateau = Plateau(start=1.0, monitor="val/loss", patience=1, cooldown=3)
    for metric in (1.0, 1.0, 1.0):
        plateau.update(metric)
    copy = Plateau(start=1.0, monitor="val/loss", patience=1, cooldown=3)
    copy.load_state_dict(plateau.state_dict())
    assert copy.state_dict() == plateau.state_dict() == {"value": 0.1, "best": 1.0, "num_bad": 0,
                                                         "cooldown_counter": 3}


def _spec(target="module.loss_weight", **arguments):
    return {"target": target, **arguments}


@pytest.mark.parametrize(("arguments", "named"), [
    ({"schedules": {"a": _spec(strategy="cosin", start=1, total_steps=5)}}, ["schedules['a']", "strategy", "'cosin'"]),
    ({"schedules": {"a": _spec(strategy="cosine", start=1, total_steps=-5)}}, ["schedules['a']", "total_steps", "-5"]),
    ({"schedules": {"a": _spec(strategy="cosine", start=1)}}, ["schedules['a']", "missing", "'total_steps'"]),
    ({"schedules": {"a": _spec(strategy="cosine", start=1, total_steps=5, totl=1)}}, ["unknown", "'totl'"]),
    ({"schedules": [_spec(strategy="linear", start="high", end=0, total_steps=5)]},
     ["schedules[0]", "start", "'high'"]),
    ({"schedules": {"a": _spec("lr", strategy="constant", start=1)}}, ["schedules['a']", "target", "'lr'"]),
    ({"schedules": {"a": _spec(strategy="constant", start=1), "b": _spec(strategy="constant", start=2)}},
     ["schedules['b']", "'module.loss_weight'", "schedules['a']"]),
    ({"schedules": {"a": _spec(strategy="warmup", warmup_steps=10, total_steps=10)}}, ["warmup_steps=10"]),
    ({"schedules": {"a": _spec(strategy="plateau", start=1)}}, ["missing", "'monitor'"]),
    ({"schedules": {"a": _spec(strategy="plateau", monitor="val/loss", factor=1.5)}}, ["factor", "1.5"]),
    ({"schedules": {"a": _spec(strategy="plateau", monitor="val/loss", mode="avg")}}, ["mode", "'avg'"]),
    ({"schedules": {"a": _spec(strategy="plateau", monitor="val/loss", delay_steps=3)}}, ["delay_steps", "3"]),
    ({"schedules": {"a": _spec(strategy="exponential", start=1, gamma=0.5, end=0.1, total_steps=3)}},
     ["gamma=0.5", "end=0.1"]),
    ({"schedules": {"a": _spec(strategy="step", step_size=0)}}, ["step_size", "0"]),
    ({"schedules": {"a": _spec(strategy="sequential", phases=[{"strategy": "constant", "start": 1},
                                                              {"strategy": "constant"}])}},
     ["phases[0].steps", "None"]),
    ({"schedules": {"a": _spec(strategy="sequential", phases=[
        {"strategy": "constant", "start": 1, "steps": 2}, {"strategy": "plateau", "monitor": "val/loss"}])}},
     ["phases[1]", "plateau"]),
    ({"schedules": {"a": _spec(strategy="constant", start=1,
                               start_when={"monitor": "m", "threshold": 1, "mode": "avg"})}},
     ["start_when.mode", "'avg'"]),
    ({"schedules": {"a": _spec(strategy="constant", start=1, start_when={"threshold": 1})}}, ["start_when.monitor"]),
    ({"schedules": {"a": _spec(strategy="constant", start=1, start_when={"monitor": "m", "threshold": "x"})}},
     ["start_when.threshold", "'x'"]),
    ({"schedules": {"a": _spec(strategy="constant", start=1, start_when={"monitor": "m", "threshold": 1, "x": 2})}},
     ["`start_when`: unknown key(s) ['x']"]),
    ({"schedules": {"a": _spec(strategy="plateau", monitor="val/loss", start_when={"monitor": "m", "threshold": 1})}},
     ["start_when", "'plateau'"]),
    ({"schedules": {}}, ["schedules", "{}"]),
    ({"schedules": "cosine"}, ["schedules", "'cosine'"]),
    ({"schedules": {"a": _spec(strategy="constant", start=1)}, "interval": "batch"}, ["interval", "'batch'"]),
    ({"schedules": {"a": _spec(strategy="constant", start=1)}, "max_history": -1}, ["max_history", "-1"]),
])
def test_bad_arguments_name_argument_and_value(arguments, named):
    with pytest.raises(ValueError) as error:
        ParamScheduler(**arguments)
    for text in named:
        assert text in str(error.value)


@pytest.mark.parametrize(("target", "error", "named"), [
    ("module.missing", AttributeError, ["module.missing", "ToyRegression"]),
    ("module.layer.missing", AttributeError, ["module.layer.missing", "ToyRegression", "layer.missing"]),
    ("module.scripted", TypeError, ["module.scripted", "ToyRegression.scripted", "not a number"]),
    ("optimizer.lr@2", ValueError, ["optimizer.lr@2", "SGD", "group 2"]),
    ("optimizer.nesterov", ValueError, ["optimizer.nesterov", "SGD", "'nesterov'"]),
    ("optimizer1.lr", ValueError, ["optimizer1.lr", "ToyRegression", "optimizer 1"]),
])
def test_bad_target_is_named_at_fit_start(tmp_path, target, error, named):
    scheduler = ParamScheduler({"x": {"target": target, "strategy": "constant", "start": 0.5}})
    with pytest.raises(error) as raised:
        toy_trainer(tmp_path, [scheduler], max_steps=1).fit(ToyRegression(), toy_loader(), toy_loader())
    for text in named:
        assert text in str(raised.value)


class Recorder(pl.Callback):
    """Records (global_step, epoch, lr of group 0, attribute) at each batch start, after the scheduler has run."""

    def __init__(self, attribute: str = "loss_weight"):
        self.attribute = attribute
        self.rows: list[tuple[int, int, float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rows.append((trainer.global_step, trainer.current_epoch, trainer.optimizers[0].param_groups[0]["lr"],
                          float(getattr(pl_module, self.attribute))))


def test_toy_module_follows_schedules_per_step(tmp_path):
    lr = Cosine(0.1, 8, end=0.01)
    weight = build_schedule({"strategy": "linear", "start": 1.0, "end": 0.0, "total_steps": 4, "delay_steps": 2})
    scheduler = ParamScheduler({"lr": _spec("optimizer.lr@0", strategy="cosine", start=0.1, end=0.01, total_steps=8),
                                "weight": _spec(strategy="linear", end=0.0, total_steps=4, delay_steps=2)})
    recorder = Recorder()
    toy_trainer(tmp_path, [scheduler, recorder], max_steps=10).fit(ToyRegression(), toy_loader(), toy_loader())
    assert [row[0] for row in recorder.rows] == list(range(10))
    assert [row[2] for row in recorder.rows] == pytest.approx([lr(step) for step in range(10)])
    assert [row[3] for row in recorder.rows] == pytest.approx([weight(step) for step in range(10)])


def test_epoch_interval_changes_once_per_epoch(tmp_path):
    scheduler = ParamScheduler([_spec("optimizer.lr", strategy="step", start=1.0, step_size=1, gamma=0.5)],
                               interval="epoch")
    recorder = Recorder()
    trainer = toy_trainer(tmp_path, [scheduler, recorder], max_steps=-1, max_epochs=3, val_check_interval=None,
                          check_val_every_n_epoch=1)
    trainer.fit(ToyRegression(), toy_loader(n=32, batch_size=8), toy_loader())
    assert [(epoch, lr) for _, epoch, lr, _ in recorder.rows] == [(e, 0.5 ** e) for e in range(3) for _ in range(4)]
    assert scheduler.history == [(0, "optimizer.lr", 1.0), (4, "optimizer.lr", 0.5), (8, "optimizer.lr", 0.25)]


@pytest.mark.parametrize("log_changes", [True, False])
def test_changes_are_recorded_and_logged(tmp_path, log_changes):
    collecting, csv_logger = CollectingLogger(), CSVLogger(tmp_path, name="csv")
    scheduler = ParamScheduler({"w": _spec(strategy="step", start=1.0, step_size=2, gamma=0.5),
                                "lr": _spec("optimizer.lr@0", strategy="constant", start=0.01)},
                               log_changes=log_changes, max_history=3)
    trainer = toy_trainer(tmp_path, [scheduler], max_steps=6, logger=[collecting, csv_logger])
    trainer.fit(ToyRegression(), toy_loader(), toy_loader())
    # Bounded: the oldest change (the weight's, first of step 0) has been dropped to keep the newest three.
    assert scheduler.history == [(0, "optimizer.lr@0", 0.01), (2, "module.loss_weight", 0.5),
                                 (4, "module.loss_weight", 0.25)]
    assert scheduler.values == {"optimizer.lr@0": 0.01, "module.loss_weight": 0.25}
    logged = [(step, metrics) for step, metrics in collecting.calls if any(k.startswith("sched/") for k in metrics)]
    with open(Path(csv_logger.log_dir) / "metrics.csv") as file:
        csv_rows = [(int(row["step"]), float(row["sched/module.loss_weight"])) for row in csv.DictReader(file)
                    if row.get("sched/module.loss_weight")]
    if not log_changes:
        assert logged == [] and csv_rows == []
        return
    assert logged == [(0, {"sched/module.loss_weight": 1.0, "sched/optimizer.lr/group0": 0.01}),
                      (2, {"sched/module.loss_weight": 0.5}), (4, {"sched/module.loss_weight": 0.25})]
    assert csv_rows == [(0, 1.0), (2, 0.5), (4, 0.25)]


def test_tacotron2_guided_attention_weight_is_scheduled(tmp_path):
    module = Tacotron2Module(tiny_config(), guided_attention_weight=2.0, health_utterances=0)
    # No `start`: the schedule starts from the module's own value.
    scheduler = ParamScheduler({"ga": _spec("module.guided_attention_weight", strategy="linear", end=0.0,
                                            total_steps=4)})
    recorder = Recorder("guided_attention_weight")
    trainer = toy_trainer(tmp_path, [scheduler, recorder], max_steps=5, limit_val_batches=0, val_check_interval=None)
    trainer.fit(module, repeated_loader(synthetic_batch(), 8))
    assert [row[3] for row in recorder.rows] == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])
    assert module.guided_attention_weight == 0.0
    assert scheduler.state_dict()["base_values"] == {"module.guided_attention_weight": 2.0}


@pytest.mark.parametrize(("mode", "scripted", "starts_at"), [
    ("max", [0.1, 0.2, 0.6, 0.1, 0.9], 3),  # validations after steps 1, 2, 3, ...: first >= 0.5 after step 3
    ("min", [0.9, 0.4, 0.1], 2),
    ("max", [0.1], None),  # never met: held at the start
])
def test_start_when_holds_the_schedule_until_the_metric_meets_the_threshold(tmp_path, mode, scripted, starts_at):
    curve = build_schedule({"strategy": "linear", "start": 1.0, "end": 0.0, "total_steps": 4, "delay_steps": 1})
    scheduler = ParamScheduler({"w": _spec(strategy="linear", start=1.0, end=0.0, total_steps=4, delay_steps=1,
                                           start_when={"monitor": "val/score", "threshold": 0.5, "mode": mode})})
    recorder = Recorder()
    toy_trainer(tmp_path, [scheduler, recorder], max_steps=10).fit(
        ToyRegression(scripted={"val/score": scripted}), toy_loader(), toy_loader())
    expected = [1.0 if starts_at is None or step < starts_at else curve(step - starts_at) for step in range(10)]
    assert [row[3] for row in recorder.rows] == pytest.approx(expected)
    assert scheduler.state_dict()["started"] == ({} if starts_at is None else {"module.loss_weight": starts_at})


def test_start_when_survives_a_resume(tmp_path):
    def run(folder, max_steps, ckpt_path=None):
        scheduler, recorder = ParamScheduler({"w": _spec(strategy="linear", start=1.0, end=0.0, total_steps=8,
                                                         start_when={"monitor": "val/score", "threshold": 0.5})}), \
            Recorder()
        trainer = toy_trainer(folder, [scheduler, recorder], max_steps=max_steps)
        # Met at the second validation only: a resumed run that forgot would wait for a condition never met again.
        trainer.fit(ToyRegression(scripted={"val/score": [0.0, 0.9, 0.0]}), toy_loader(), toy_loader(),
                    ckpt_path=ckpt_path)
        return trainer, recorder

    _, full = run(tmp_path / "full", 8)
    first, _ = run(tmp_path / "first", 4)
    first.save_checkpoint(tmp_path / "half.ckpt")
    _, resumed = run(tmp_path / "resumed", 8, tmp_path / "half.ckpt")
    assert [row[3] for row in resumed.rows] == [row[3] for row in full.rows[4:]]
    assert full.rows[-1][3] < 1.0


def test_missing_start_when_metric_is_named(tmp_path):
    scheduler = ParamScheduler({"w": _spec(strategy="constant", start=1.0,
                                           start_when={"monitor": "val/missing", "threshold": 0.5})})
    with pytest.raises(RuntimeError, match="start_when monitors 'val/missing', which was not logged"):
        toy_trainer(tmp_path, [scheduler], max_steps=2).fit(ToyRegression(), toy_loader(), toy_loader())


def _resume_specs():
    return {"lr": _spec("optimizer.lr", strategy="cosine", end=0.0, total_steps=16),  # from the optimizer's 0.05
            "weight": _spec(strategy="plateau", monitor="val/loss", factor=0.5, patience=2, cooldown=1)}


def _resume_run(tmp_path, max_steps, ckpt_path=None):
    scheduler, recorder = ParamScheduler(_resume_specs()), Recorder()
    trainer = toy_trainer(tmp_path, [scheduler, recorder], max_steps=max_steps)
    trainer.fit(ToyRegression(learning_rate=0.05, scripted={"val/loss": [1.0]}), toy_loader(), toy_loader(),
                ckpt_path=ckpt_path)
    return trainer, scheduler, recorder


def test_resume_continues_schedule_and_plateau(tmp_path):
    _, full, full_recorder = _resume_run(tmp_path / "full", 16)
    first_trainer, first, _ = _resume_run(tmp_path / "first", 8)
    path = tmp_path / "half.ckpt"
    first_trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)["callbacks"][first.state_key]  # plain values only
    # Cut at checks 4 and 8: the cooldown after the second cut must carry over into the resumed run.
    assert state["plateaus"]["module.loss_weight"] == {"value": 0.25, "best": 1.0, "num_bad": 0, "cooldown_counter": 1}
    _, resumed, resumed_recorder = _resume_run(tmp_path / "resumed", 16, ckpt_path=path)
    assert resumed_recorder.rows[0][0] == 8
    # The same floats: values are functions of the step. (Epochs differ: a checkpoint saved after fit counts its
    # epoch as finished.)
    def without_epoch(rows):
        return [(step, lr, weight) for step, _, lr, weight in rows]

    assert without_epoch(resumed_recorder.rows) == without_epoch(full_recorder.rows[8:])
    assert {row[3] for row in full_recorder.rows} == {1.0, 0.5, 0.25, 0.125}  # the plateau did fire
    assert resumed.history == full.history
    assert resumed.state_dict() == full.state_dict()


def test_two_schedulers_keep_separate_state(tmp_path):
    def pair():
        return (ParamScheduler({"a": _spec("optimizer.lr", strategy="plateau", monitor="val/loss", patience=0,
                                           factor=0.5)}),
                ParamScheduler({"b": _spec(strategy="plateau", monitor="val/loss", patience=1, factor=0.1)}))

    first = pair()
    trainer = toy_trainer(tmp_path, list(first), max_steps=4)
    trainer.fit(ToyRegression(scripted={"val/loss": [1.0]}), toy_loader(), toy_loader())
    path = tmp_path / "two.ckpt"
    trainer.save_checkpoint(path)
    assert first[0].state_key != first[1].state_key
    assert {first[0].state_key, first[1].state_key} <= set(torch.load(path, weights_only=True)["callbacks"])
    second = pair()
    toy_trainer(tmp_path, list(second), max_steps=4).fit(ToyRegression(scripted={"val/loss": [1.0]}), toy_loader(),
                                                         toy_loader(), ckpt_path=path)
    assert second[0].state_dict() == first[0].state_dict()
    assert second[1].state_dict() == first[1].state_dict()
    assert first[0].values == {"optimizer.lr": 0.05 * 0.5 ** 3} and first[1].values == {"module.loss_weight": 0.1}


def test_two_schedulers_on_one_target_clash_at_fit_start(tmp_path):
    schedulers = [ParamScheduler({"a": _spec("optimizer.lr", strategy="constant", start=0.1)}),
                  ParamScheduler({"b": _spec("optimizer.lr@0", strategy="constant", start=0.2)})]
    with pytest.raises(ValueError, match=r"schedules\['b'\].*optimizer.lr@0.*schedules\['a'\]"):
        toy_trainer(tmp_path, schedulers, max_steps=1).fit(ToyRegression(), toy_loader(), toy_loader())


def test_missing_plateau_metric_is_named(tmp_path):
    scheduler = ParamScheduler({"p": _spec(strategy="plateau", monitor="val/los")})
    with pytest.raises(RuntimeError, match="'val/los'.*val/loss"):
        toy_trainer(tmp_path, [scheduler], max_steps=2).fit(ToyRegression(), toy_loader(), toy_loader())


class ToyWithScheduler(ToyRegression):
    def configure_optimizers(self):
        optimizer = super().configure_optimizers()
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}


def test_warns_when_the_module_schedules_the_lr_too(tmp_path):
    scheduler = ParamScheduler({"lr": _spec("optimizer.lr", strategy="constant", start=0.1)})
    with pytest.warns(UserWarning, match="lr scheduler"):
        toy_trainer(tmp_path, [scheduler], max_steps=1).fit(ToyWithScheduler(), toy_loader(), toy_loader())


def test_config_file_instantiates_the_tacotron_use_case():
    from hydra.utils import instantiate

    scheduler = instantiate(OmegaConf.load(CONFIG).param_scheduler)
    assert isinstance(scheduler, ParamScheduler) and scheduler.interval == "step"
    spec = dict(scheduler.schedules["guided_attention"])
    assert type(spec) is dict and spec.pop("target") == "module.guided_attention_weight"
    assert "start" not in spec  # the module's own weight: a model without guided attention stays without
    curve = build_schedule({**spec, "start": 5.0})  # model=small's guided_attention_weight
    assert [curve(step) for step in (0, 300, 600, 900, 1200)] == pytest.approx([5.0, 5.0, 2.5, 0.0, 0.0])


@pytest.mark.parametrize("module", [schedule_curves_module, param_scheduler_module],
                         ids=["schedule_curves", "param_scheduler"])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
