"""The sweep report: built from studies made here (SQLite), parsed back, every section checked for real content;
the pruning arithmetic on tables of trials; best-trial media from disk and from MLflow; the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers.mlflow_stores import fresh_mlflow_store
from tests.helpers.report_studies import Sections, frozen, write_media
from tuner_callbacks.report import REPORT_TAG, build_report, log_report, main
from tuner_callbacks.report.data import gain_over_defaults, pruning_savings, trial_rows
from tuner_callbacks.report.media import find_media

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ["summary", "history", "importances", "parallel", "slices", "pareto", "trials", "metrics", "pruning",
            "media"]
PNG, WAV = b"\x89PNG\r\n\x1a\n", (b"RIFF", b"WAVE")

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """One SQLite MLflow store per module (its schema takes seconds), with an experiment for the sweep's runs."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = fresh_mlflow_store(tmp_path_factory, folder)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("train", artifact_location=str(folder / "artifacts"))
    return uri, client, experiment_id


@pytest.fixture(scope="module")
def sweep(mlflow_store, tmp_path_factory):
    """A finished single-objective sweep: four complete trials, one pruned, one failed; trial runs in MLflow;
    the best trial (1) has media on disk at steps 10 and 50."""
    uri, client, experiment_id = mlflow_store
    folder = tmp_path_factory.mktemp("sweep")
    storage = f"sqlite:///{folder / 'optuna.db'}"
    study = optuna.create_study(study_name="search", storage=storage, direction="minimize")
    trials = []
    plan = [(TrialState.COMPLETE, 0.50, 1000), (TrialState.COMPLETE, 0.20, 1000), (TrialState.COMPLETE, 0.40, 800),
            (TrialState.PRUNED, 0.90, 300), (TrialState.FAIL, None, 120), (TrialState.COMPLETE, 0.35, 1000)]
    for number, (state, value, steps) in enumerate(plan):
        run_id = client.create_run(experiment_id, run_name=f"trial-{number}",
                                   tags={"optuna.study": "search", "optuna.trial": str(number)}).info.run_id
        attrs = {"mlflow_run_id": run_id, "output_dir": str(folder / f"job{number}"), "global_step": steps,
                 "max_steps": 1000}
        if state == TrialState.FAIL:
            attrs["error"] = "RuntimeError: CUDA out of memory <tried 2 GiB>"  # escaped, or the parser eats it
        elif number == 5:  # a job that recorded no metrics in its trial: they come from its MLflow run
            client.log_metric(run_id, "val/loss", 0.35)
            client.log_metric(run_id, "val/loss", 0.3125, step=2)  # the latest value counts
        else:
            attrs["metrics"] = {"val/loss": value, f"val/only_in_{number}": 1.0 + number}
        trial = frozen(number, state, values=None if value is None else [value], seconds=10 + steps / 10,
                       steps=range(100, steps + 1, 100), user_attrs=attrs)
        study.add_trial(trial)
        trials.append(trial)
    write_media(folder / "job1", 10, shade=0.1)
    newest = write_media(folder / "job1", 50, shade=0.9)
    out = build_report(storage, "search", folder / "report.html", tracking_uri=uri)
    return {"storage": storage, "folder": folder, "out": out, "newest": newest, "trials": trials,
            "html": Sections(out.read_text(encoding="utf-8"))}


def test_report_has_every_section_in_order(sweep):
    assert sweep["out"] == sweep["folder"] / "report.html"
    assert sweep["html"].order == SECTIONS


@pytest.mark.parametrize("section", ["history", "importances", "parallel", "slices"])
def test_plot_sections_embed_png_images(sweep, section):
    images = sweep["html"].found[section]["images"]
    assert images and all(mime == "image/png" and data.startswith(PNG) for mime, data in images)


def test_importances_rank_both_parameters(sweep):
    rows = sweep["html"].found["importances"]["rows"]
    assert sorted(cells[0] for _, cells in rows) == ["batch_size", "lr"]
    assert sum(float(cells[1]) for _, cells in rows) == pytest.approx(1.0, abs=2e-3)


def test_single_objective_has_no_pareto_front(sweep):
    pareto = sweep["html"].found["pareto"]
    assert "single objective" in pareto["text"] and not pareto["images"]


def test_trials_table_has_one_row_per_trial_with_its_state(sweep):
    rows = sweep["html"].found["trials"]["rows"]
    assert [(css, cells[0], cells[1]) for css, cells in rows] == [
        (t.state.name, str(t.number), t.state.name) for t in sweep["trials"]]
    by_number = {cells[0]: cells for _, cells in rows}
    assert by_number["4"][-1] == "RuntimeError: CUDA out of memory <tried 2 GiB>"
    assert by_number["3"][-1] == "pruned at step 300" and "300 / 1000" in by_number["3"]
    assert by_number["1"][2] == "0.2" and "lr=0.002" in by_number["1"][3]


def test_metrics_section_shows_every_metric_each_finished_trial_logged(sweep):
    rows = sweep["html"].found["metrics"]["rows"]
    # One row per metric name, one column per finished trial with metrics; whatever the names, none is special.
    assert [cells for _, cells in rows] == [
        ["val/loss", "0.5", "0.2", "0.4", "0.9", "0.3125"],
        ["val/only_in_0", "1", "-", "-", "-", "-"],
        ["val/only_in_1", "-", "2", "-", "-", "-"],
        ["val/only_in_2", "-", "-", "3", "-", "-"],
        ["val/only_in_3", "-", "-", "-", "4", "-"],
    ]
    assert "trial 5" in sweep["html"].found["metrics"]["text"]


def test_metrics_section_says_so_when_no_trial_recorded_any(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="bare", storage=storage)
    study.add_trial(frozen(0, TrialState.COMPLETE, values=[1.0]))
    html = Sections(build_report(storage, "bare", tmp_path / "r.html", log_to_mlflow=False).read_text("utf-8"))
    assert "No trial recorded metrics" in html.found["metrics"]["text"]


def test_pruning_section_counts_what_pruning_saved(sweep):
    trials = sweep["trials"]
    saved = sum(t.user_attrs["max_steps"] - t.user_attrs["global_step"] for t in trials if t.state == TrialState.PRUNED)
    trained = sum(t.user_attrs["global_step"] for t in trials)
    (_, cells), = [row for row in sweep["html"].found["pruning"]["rows"]]
    assert cells[:4] == ["1", "1", str(saved), str(trained)] and saved == 700
    assert cells[4] == f"{saved / (trained + saved):.1%}"
    assert "max_steps - steps trained" in sweep["html"].found["pruning"]["text"]
    assert sweep["html"].found["pruning"]["images"]  # learning curves


def test_media_section_embeds_the_best_trials_newest_media(sweep):
    media = sweep["html"].found["media"]
    newest = sweep["newest"]
    assert [data for _, data in media["images"]] == [newest["alignment"], newest["inference_alignment"],
                                                     newest["mel"]]
    (mime, wav), = media["audio"]
    assert mime == "audio/wav" and wav == newest["audio"] and (wav[:4], wav[8:12]) == WAV
    assert "Trial 1" in media["text"] and "step 50" in media["text"]


def test_summary_names_the_best_trial(sweep):
    (_, cells), = sweep["html"].found["summary"]["rows"]
    assert cells[:2] == ["1", "0.2"] and cells[-1] == sweep["trials"][1].user_attrs["mlflow_run_id"]


def test_report_is_logged_to_a_sweep_run_in_mlflow(sweep, mlflow_store):
    _, client, experiment_id = mlflow_store
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{REPORT_TAG}` = 'true'")
    assert [run.info.run_name for run in runs] == ["sweep-search"]
    assert runs[0].data.tags["optuna.study"] == "search"
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id, "report")] == ["report/report.html"]
    assert runs[0].data.metrics["sweep/steps_saved_by_pruning"] == 700
    assert runs[0].data.metrics["sweep/best_value"] == 0.2


def test_media_come_from_mlflow_when_the_run_folder_is_gone(mlflow_store, tmp_path):
    _, client, experiment_id = mlflow_store
    run_id = client.create_run(experiment_id, run_name="folder-gone").info.run_id
    older = write_media(tmp_path / "old", 200, shade=0.3)
    newest = write_media(tmp_path / "new", 1200, shade=0.6)
    for source, step in ((tmp_path / "old", 200), (tmp_path / "new", 1200)):
        client.log_artifacts(run_id, str(source / "media" / f"step_{step:06d}"), f"validation/step_{step:06d}")
    trial = frozen(0, TrialState.COMPLETE, [0.1], user_attrs={"mlflow_run_id": run_id,
                                                               "output_dir": str(tmp_path / "deleted")})
    media = find_media(trial, client)
    assert media.step == 1200 and media.files == newest != older
    assert run_id in media.source


def test_media_missing_everywhere_says_where_it_looked(tmp_path):
    trial = frozen(0, TrialState.COMPLETE, [0.1], user_attrs={"output_dir": str(tmp_path)})
    media = find_media(trial, None)
    assert not media.files and str(tmp_path) in media.missing[0] and "mlflow_run_id" in media.missing[1]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # set_metric_names
def test_multi_objective_study_has_a_pareto_front(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="two", storage=storage, directions=["minimize", "maximize"])
    study.set_metric_names(["val/loss", "val/alignment_score"])
    points = [(0.5, 0.6), (0.3, 0.4), (0.6, 0.9), (0.7, 0.5)]  # (0.7, 0.5) is dominated by (0.5, 0.6)
    for number, values in enumerate(points):
        study.add_trial(frozen(number, TrialState.COMPLETE, list(values)))
    out = build_report(storage, "two", tmp_path / "report.html", log_to_mlflow=False)
    found = Sections(out.read_text(encoding="utf-8")).found
    pareto = found["pareto"]
    assert pareto["images"] and pareto["images"][0][1].startswith(PNG)
    assert sorted(cells[0] for _, cells in pareto["rows"]) == ["0", "1", "2"]
    assert len(found["history"]["images"]) == 2  # one per objective
    assert "val/alignment_score" in found["summary"]["text"] and "Pareto-optimal" in found["summary"]["text"]
    assert "no validation media" in found["media"]["text"]


def test_summary_states_the_gain_over_the_configured_values_and_the_table_marks_where_trials_came_from(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="tuned", storage=storage)
    study.add_trial(frozen(0, TrialState.COMPLETE, [0.5], user_attrs={"defaults": True}))
    study.add_trial(frozen(1, TrialState.COMPLETE, [0.3]))
    study.add_trial(frozen(2, TrialState.COMPLETE, [0.4], user_attrs={"warm_started_from": {"study": "old",
                                                                                            "trial": 7}}))
    found = Sections(build_report(storage, "tuned", tmp_path / "r.html", log_to_mlflow=False).read_text()).found
    assert ("Gain over the configured values: best 0.3 (trial 1) vs 0.5 for the configured values (trial 0): "
            "-0.2 (-40.0%)") in found["summary"]["text"]
    notes = [cells[-1] for _, cells in found["trials"]["rows"]]
    assert notes == ["the configured values (defaults)", "", "copied from study old trial 7"]


def test_no_gain_is_stated_without_a_completed_defaults_trial(sweep):
    assert "Gain over" not in sweep["html"].found["summary"]["text"]  # no trial ran the configured values
    study = optuna.create_study()
    study.add_trial(frozen(0, TrialState.PRUNED, user_attrs={"defaults": True}, steps=[100]))
    study.add_trial(frozen(1, TrialState.COMPLETE, [0.3]))
    assert gain_over_defaults(study) is None


def test_study_with_one_complete_trial_still_builds(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="young", storage=storage)
    study.add_trial(frozen(0, TrialState.COMPLETE, [0.4]))
    study.add_trial(frozen(1, TrialState.FAIL, user_attrs={"error": "NaN loss"}))
    parsed = Sections(build_report(storage, "young", tmp_path / "r.html", log_to_mlflow=False).read_text())
    assert parsed.order == SECTIONS
    assert "at least 2 complete trials, this study has 1" in parsed.found["importances"]["text"]
    assert "No trial was pruned" in parsed.found["pruning"]["text"]


def test_pruning_savings_arithmetic():
    trials = [frozen(0, TrialState.COMPLETE, [0.1], seconds=100, user_attrs={"global_step": 1000, "max_steps": 1000}),
              frozen(1, TrialState.PRUNED, [0.5], seconds=25, user_attrs={"global_step": 250, "max_steps": 1000}),
              # no global_step: the last reported step (400) counts as trained
              frozen(2, TrialState.PRUNED, [0.4], seconds=40, steps=[200, 400], user_attrs={"max_steps": 1000}),
              frozen(3, TrialState.PRUNED, [0.6], user_attrs={"global_step": 100}),  # no budget: not counted
              frozen(4, TrialState.FAIL, seconds=5, user_attrs={"global_step": 50, "max_steps": 1000})]
    savings = pruning_savings(trials)
    assert (savings.pruned, savings.counted, savings.uncounted) == (3, [1, 2], [3])
    assert savings.steps_saved == 750 + 600
    assert savings.steps_trained == 1000 + 250 + 400 + 100 + 50
    assert savings.fraction == pytest.approx(1350 / (1800 + 1350))
    assert savings.seconds_saved == pytest.approx(750 * 25 / 250 + 600 * 40 / 400)
    assert [row.note for row in trial_rows(trials)] == ["", "pruned at step 250", "pruned at step 400",
                                                        "pruned at step 100", "failed"]


def test_nothing_to_save_without_pruned_trials():
    savings = pruning_savings([frozen(0, TrialState.COMPLETE, [0.1], user_attrs={"global_step": 10})])
    assert (savings.pruned, savings.steps_saved, savings.fraction, savings.seconds_saved) == (0, 0, 0.0, None)


def test_journal_storage_builds(tmp_path):
    from tuner_callbacks.optuna_storage import open_storage

    storage = f"journal:{tmp_path / 'journal.log'}"
    study = optuna.create_study(study_name="journaled", storage=open_storage(storage))
    study.add_trial(frozen(0, TrialState.PRUNED, [0.4], user_attrs={"global_step": 30, "max_steps": 100}))
    parsed = Sections(build_report(storage, "journaled", tmp_path / "r.html", log_to_mlflow=False).read_text())
    assert parsed.order == SECTIONS and parsed.found["trials"]["rows"][0][0] == "PRUNED"
    assert "No trial has completed" in parsed.found["history"]["text"]


def test_missing_storage_is_not_created(tmp_path):
    database, journal = tmp_path / "nothing.db", tmp_path / "nothing.log"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report(f"sqlite:///{database}", "search")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report(f"journal:{journal}", "search")
    assert not database.exists() and not journal.exists()


def test_cli_missing_study_exits_2_naming_the_studies(sweep, capsys):
    assert main(["--storage", sweep["storage"], "--study", "nope", "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "search" in err


def test_rebuilding_logs_to_the_same_sweep_run(sweep, mlflow_store):
    _, client, experiment_id = mlflow_store
    first = client.search_runs([experiment_id], filter_string=f"tags.`{REPORT_TAG}` = 'true'")
    study = optuna.load_study(study_name="search", storage=sweep["storage"])
    again = log_report(client, sweep["out"], study, pruning_savings(study.trials))
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{REPORT_TAG}` = 'true'")
    assert [run.info.run_id for run in runs] == [first[0].info.run_id] == [again]


def test_cli_main_prints_the_report_path(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="main", storage=storage).add_trial(frozen(0, TrialState.COMPLETE, [0.4]))
    out = tmp_path / "report.html"
    assert main(["--storage", storage, "--study", "main", "--out", str(out), "--no-mlflow"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert Sections(out.read_text(encoding="utf-8")).order == SECTIONS


def test_cli_refuses_a_url_that_is_no_storage(capsys):
    assert main(["--storage", "outputs/optuna.db", "--study", "x", "--no-mlflow"]) == 2
    assert "'outputs/optuna.db'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_writes_the_report(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="cli", storage=storage)
    study.add_trial(frozen(0, TrialState.COMPLETE, [0.4]))
    out = tmp_path / "sweep" / "report.html"
    result = subprocess.run([sys.executable, "-m", "tuner_callbacks.report", "--storage", storage, "--study", "cli",
                             "--out", str(out), "--no-mlflow"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(out)
    assert Sections(out.read_text(encoding="utf-8")).order == SECTIONS
