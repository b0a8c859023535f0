"""``python -m tuner_callbacks.registry``: list, stats, export, cleanup and compare on a real SQLite registry."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from tacotron2_lightning.app.training import train
from tacotron2_lightning.checkpoint import load_nvidia_checkpoint
from tacotron2_lightning.model import Tacotron2
from tacotron2_lightning.synthesis import load_for_synthesis
from tests.helpers.batches import DATA_DIR
from tests.helpers.train_configs import ONLY_THE_REGISTRY, compose_train_config
from tuner_callbacks.registry import Registry
from tuner_callbacks.registry.__main__ import main

MODEL = "tacotron2-train"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_cache):
    """A tiny 4-step training run with the registry callback: versions at steps 2 and 4 (val/loss improves)."""
    root = tmp_path_factory.mktemp("trained")
    cfg = compose_train_config(root, shared_cache, ONLY_THE_REGISTRY)
    GlobalHydra.instance().clear()
    train(cfg)
    return root, cfg.paths.mlflow_tracking_uri


def run_cli(capsys, uri, *argv) -> tuple[int, str, str]:
    """Runs the CLI in-process; returns (exit status, stdout, stderr)."""
    try:
        main(["--tracking-uri", uri, *[str(a) for a in argv]])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def register_file(registry: Registry, name: str, file: Path, value: float, mode: str = "min") -> int:
    """Registers ``file`` as ``model.ckpt`` of a new version with ``value`` as its metric, as the callback does."""
    client = registry.client
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        name, str(file.parent / "artifacts"))
    run_id = client.create_run(experiment_id).info.run_id
    artifact_path = f"registry/{name}/{file.stem}"
    target = file.parent / "upload" / "model.ckpt"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(file.read_bytes())
    client.log_artifact(run_id, str(target), artifact_path)
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    tags = {"monitor": "val/loss", "monitor_value": repr(value), "mode": mode, "artifact_path": artifact_path}
    return int(client.create_model_version(name, source, run_id=run_id, tags=tags).version)


# list and stats


def test_list_marks_the_best_version_and_its_alias(trained, capsys):
    _, uri = trained
    status, out, _ = run_cli(capsys, uri, "list", "--json")
    assert status == 0
    rows = json.loads(out)[MODEL]
    assert [r["version"] for r in rows] == [2, 1]  # best first: val/loss fell from step 2 to step 4
    best, other = rows
    assert best["best"] and best["aliases"] == ["champion"] and best["step"] == 4 and best["value"] < other["value"]
    assert not other["best"] and other["aliases"] == [] and other["registered_on"] == "improvement"
    assert best["bytes"] > 100_000 and best["monitor"] == "val/loss"
    status, out, _ = run_cli(capsys, uri, "list")
    lines = out.splitlines()
    assert lines[0] == f"{MODEL}: 2 version(s)"
    assert lines[3].split()[:3] == ["*", "2", "champion"]


def test_stats_sum_sizes_and_name_the_best(trained, capsys):
    _, uri = trained
    status, out, _ = run_cli(capsys, uri, "stats", "--json")
    listed = json.loads(run_cli(capsys, uri, "list", "--json")[1])[MODEL]
    stats = json.loads(out)[MODEL]
    assert status == 0
    assert stats["versions"] == 2 and stats["best_version"] == 2 and stats["aliases"] == {"champion": 2}
    assert stats["total_bytes"] == sum(r["bytes"] for r in listed)
    assert stats["worst_value"] == max(r["value"] for r in listed)
    status, out, _ = run_cli(capsys, uri, "stats", MODEL)
    assert "best: version 2 (val/loss = " in out and "champion -> 2" in out


# export


def test_export_nvidia_has_exactly_nvidias_keys_and_loads_back(trained, capsys, tmp_path):
    _, uri = trained
    out = tmp_path / "tacotron2_statedict.pt"
    status, stdout, _ = run_cli(capsys, uri, "export", f"{MODEL}@champion", "--format", "nvidia", "--out", out)
    assert status == 0 and str(out) in stdout
    content = torch.load(out, weights_only=True)
    assert list(content) == ["state_dict"]
    lines = (DATA_DIR / "nvidia_tacotron2_state_dict.txt").read_text().splitlines()
    nvidia_keys = [parts[0] for parts in (line.split("\t") for line in lines) if len(parts) == 3]  # key shape dtype
    assert len(nvidia_keys) == 84 and sorted(content["state_dict"]) == sorted(nvidia_keys)
    module = load_for_synthesis(Registry(uri).checkpoint(f"{MODEL}@champion", tmp_path / "registered"))
    model = Tacotron2(module.config)
    load_nvidia_checkpoint(model, out)  # strict: every key and shape checked
    for key, value in module.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_export_lightning_is_the_registered_checkpoint(trained, capsys, tmp_path):
    _, uri = trained
    out = tmp_path / "model.ckpt"
    assert run_cli(capsys, uri, "export", f"models:/{MODEL}/1", "--format", "lightning", "--out", out)[0] == 0
    registered = Registry(uri).checkpoint(f"{MODEL}/1", tmp_path / "registered")
    assert out.read_bytes() == registered.read_bytes()
    assert torch.load(out, weights_only=True)["global_step"] == 2


def test_export_torchscript_decodes_like_the_eager_model(trained, capsys, tmp_path):
    _, uri = trained
    out = tmp_path / "tacotron2.pt"
    assert run_cli(capsys, uri, "export", f"{MODEL}@champion", "--format", "torchscript", "--out", out)[0] == 0
    scripted = torch.jit.load(str(out))
    module = load_for_synthesis(Registry(uri).checkpoint(f"{MODEL}@champion", tmp_path / "registered"))
    sequence = torch.randint(12, 60, (1, 11))
    torch.manual_seed(3)  # the prenet's dropout is on in both, as in NVIDIA's inference
    _, expected_mel, expected_gate, expected_alignment, _ = module.model.inference(sequence, max_decoder_steps=9)
    torch.manual_seed(3)
    mel, gate, alignment = scripted(sequence, 9)
    torch.testing.assert_close(mel, expected_mel)
    torch.testing.assert_close(gate, expected_gate)
    torch.testing.assert_close(alignment, expected_alignment)


# compare


def test_compare_a_version_with_itself_finds_no_difference(trained, capsys):
    _, uri = trained
    status, out, _ = run_cli(capsys, uri, "compare", f"{MODEL}@champion", f"{MODEL}/2", "--json")
    assert status == 0
    result = json.loads(out)
    assert result["utterances"] == 4  # the run's data.val_size, from the stored data.yaml
    assert all(m["p_value"] == 1.0 and m["mean_difference"] == 0 for m in result["metrics"])
    # The built-in data has word timings: the alignment error and its ratio to a constant-rate line join the seven.
    assert result["verdict"].count("no significant difference") == 9


def test_compare_reports_per_utterance_paired_differences(trained, capsys, tmp_path):
    root, uri = trained
    # The data node of the run's config, as a file: what --data-config takes (e.g. a run's .hydra/config.yaml).
    data_config = tmp_path / "config.yaml"
    data_config.write_text((Registry(uri).checkpoint(f"{MODEL}/1", tmp_path / "v1").with_name("data.yaml"))
                           .read_text())
    status, out, _ = run_cli(capsys, uri, "compare", f"{MODEL}/1", f"{MODEL}@champion", "--data-config", data_config,
                             "--max-utterances", 3)
    assert status == 0
    assert "A = tacotron2-train/1" in out and "B = tacotron2-train/2 (tacotron2-train@champion)" in out
    assert "3 validation utterances" in out and "Verdict:" in out
    for label in ("mel loss", "gate loss", "alignment score", "gate-stop rate", "MCD (dB)", "alignment error ratio"):
        assert label in out
    result = json.loads(run_cli(capsys, uri, "compare", f"{MODEL}/1", f"{MODEL}/2", "--max-utterances", 3,
                                "--json")[1])
    mel = next(m for m in result["metrics"] if m["metric"] == "mel_loss")
    per_utterance = result["per_utterance"]["mel_loss"]
    assert len(per_utterance["a"]) == len(per_utterance["b"]) == 3
    assert mel["mean_difference"] == pytest.approx(sum(per_utterance["b"]) / 3 - sum(per_utterance["a"]) / 3)
    # With 3 pairs the smallest two-sided exact p-value is 2/8: never significant, whatever the models.
    assert mel["p_value"] >= 0.25 and "no significant difference on mel loss" in mel["verdict"]
    assert all(math.isfinite(v) and v >= 0 for v in result["per_utterance"]["mcd"]["a"])


# cleanup


@pytest.fixture
def ranked(tmp_path, trained):
    """A model with versions of val/loss 3, 1, 2, 5 and one without a metric; the worst (5) holds `stable`."""
    _, uri = trained
    registry = Registry(uri)
    values = [3.0, 1.0, 2.0, 5.0, math.nan]
    name = f"ranked-{tmp_path.name}"
    for index, value in enumerate(values):
        file = tmp_path / f"v{index}.ckpt"
        file.write_bytes(b"weights")
        register_file(registry, name, file, value)
    registry.client.set_registered_model_alias(name, "stable", "4")
    return registry, name


def artifact_folder(registry: Registry, name: str, version: int) -> Path:
    return Path(registry.resolve(f"{name}/{version}").source)


def test_cleanup_dry_run_changes_nothing(ranked, capsys):
    registry, name = ranked
    status, out, _ = run_cli(capsys, registry.tracking_uri, "cleanup", name, "--keep", 2, "--dry-run")
    assert status == 0
    assert out.splitlines() == [f"keep   {name}/2 (best 1 of 2)", f"keep   {name}/3 (best 2 of 2)",
                                f"keep   {name}/4 (alias stable)", f"would delete {name}/1", f"would delete {name}/5"]
    assert len(registry.versions(name)) == 5


def test_cleanup_keeps_the_best_and_aliased_versions_and_deletes_the_rest_with_their_files(ranked, capsys):
    registry, name = ranked
    folders = {v: artifact_folder(registry, name, v) for v in range(1, 6)}
    assert all((folder / "model.ckpt").is_file() for folder in folders.values())
    status, out, _ = run_cli(capsys, registry.tracking_uri, "cleanup", name, "--keep", 2)
    assert status == 0 and f"deleted {name}/1 and registry/{name}/v0" in out
    assert sorted(int(v.version) for v in registry.versions(name)) == [2, 3, 4]
    assert {v: folders[v].exists() for v in folders} == {1: False, 2: True, 3: True, 4: True, 5: False}
    assert registry.aliases(name) == {"stable": 4}


def test_cleanup_never_deletes_the_only_version(tmp_path, trained, capsys):
    registry = Registry(trained[1])
    file = tmp_path / "only.ckpt"
    file.write_bytes(b"weights")
    register_file(registry, "only-one", file, math.nan)  # no metric, no alias
    status, out, _ = run_cli(capsys, registry.tracking_uri, "cleanup", "only-one", "--keep", 1)
    assert status == 0 and "delete" not in out
    assert len(registry.versions("only-one")) == 1
    status, _, err = run_cli(capsys, registry.tracking_uri, "cleanup", "only-one", "--keep", 0)
    assert status == 2 and "expected a positive integer, got '0'" in err


# Bad input


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "nope@champion", "--format", "nvidia", "--out", "x.pt"],
         "No registered model 'nope' in sqlite:///.*; registered models: .*'tacotron2-train'"),
        (["export", f"{MODEL}@gold", "--format", "nvidia", "--out", "x.pt"],
         f"Registered model '{MODEL}' has no alias 'gold'; its aliases: champion \\(version 2\\)"),
        (["export", f"{MODEL}/9", "--format", "nvidia", "--out", "x.pt"],
         f"Registered model '{MODEL}' has no version 9; its versions: 1, 2"),
        (["compare", f"{MODEL}", f"{MODEL}/1"], f"'{MODEL}' is not a model reference; expected NAME@ALIAS"),
        (["list", "nope"], "No registered model 'nope'"),
        (["compare", f"{MODEL}/1", f"{MODEL}/2", "--data-config", "/no/such.yaml"],
         "Data config file not found: /no/such.yaml"),
    ],
)
def test_unknown_models_versions_and_aliases_exit_2_naming_what_exists(trained, capsys, tmp_path, argv, message):
    status, out, err = run_cli(capsys, trained[1], *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_a_missing_database_is_named_not_created(tmp_path, capsys):
    database = tmp_path / "typo.db"
    status, _, err = run_cli(capsys, f"sqlite:///{database}", "list")
    assert status == 2 and f"No MLflow database at {database}" in err
    assert not database.exists()


@pytest.mark.parametrize(("content", "message"), [
    (b"not a checkpoint", "Cannot read checkpoint"),
    (None, "does not fit the model: missing keys"),  # a checkpoint of another model
])
def test_corrupt_or_incompatible_checkpoints_exit_2_naming_the_file(trained, capsys, tmp_path, content, message):
    registry = Registry(trained[1])
    file = tmp_path / "bad.ckpt"
    if content is None:
        torch.save({"state_dict": {"layer.weight": torch.zeros(1, 1)}}, file)
    else:
        file.write_bytes(content)
    name = f"bad-{tmp_path.name}"
    register_file(registry, name, file, 1.0)
    status, _, err = run_cli(capsys, registry.tracking_uri, "export", f"{name}/1", "--format", "nvidia", "--out",
                             tmp_path / "x.pt")
    assert status == 2 and message in err and "model.ckpt" in err
    assert not (tmp_path / "x.pt").exists()
