"""The synthesis CLI turns checkpoints (ours and NVIDIA's) into a wav and an alignment PNG; plots render headless."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import soundfile
import torch

from tacotron2_lightning.app.synthesize import load_checkpoint, main
from tacotron2_lightning.audio import AudioConfig
from tacotron2_lightning.checkpoint import CheckpointError
from tacotron2_lightning.config import Tacotron2Config
from tacotron2_lightning.model import Tacotron2
from tacotron2_lightning.module import Tacotron2Module
from tacotron2_lightning.plots import alignment_figure, mel_figure, save_figure
from tacotron2_lightning.synthesis import SynthesisInputError, load_for_synthesis, synthesize
from tests.helpers.batches import repeated_loader, synthetic_batch, tiny_config

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOP = AudioConfig().hop_length


def set_gate(module: Tacotron2Module, logit: float) -> None:
    """Makes the stop gate output ``logit`` at every step: it fires at once (> 0) or never (< 0)."""
    gate = module.model.decoder.gate_layer.linear_layer
    with torch.no_grad():
        gate.weight.zero_()
        gate.bias.fill_(logit)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny 80-channel module after one real training step, saved as a Lightning checkpoint.

    Its gate never fires, so free-running decoding always runs to the cap and frame counts are exact.
    """
    torch.manual_seed(0)
    module = Tacotron2Module(tiny_config(n_mel_channels=80, max_decoder_steps=30), text_cleaners=["basic_cleaners"])
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, repeated_loader(synthetic_batch(n_mel_channels=80), 1))
    set_gate(module, -10.0)
    path = tmp_path_factory.mktemp("checkpoints") / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return module, path


@pytest.fixture(scope="module")
def cli_process(trained, tmp_path_factory):
    """The CLI started as a real subprocess at once: its imports (~10 s: torch, Lightning, inflect) then overlap
    the in-process tests, and :func:`test_cli_runs_as_a_real_subprocess` only waits for it."""
    folder = tmp_path_factory.mktemp("subprocess")
    out, log = folder / "speech.wav", folder / "stderr.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tacotron2_lightning.app.synthesize", "--checkpoint", str(trained[1]),
               "--text", "Hello.", "--out", str(out), "--max-decoder-steps", "8", "--seed", "0"]
    with open(log, "w") as stderr:  # a file, not a pipe: nobody reads a pipe until the test, so it could fill
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=stderr, stderr=subprocess.STDOUT)
    yield process, out, log
    if process.poll() is None:
        process.kill()
        process.wait()


def run_main(capsys, *argv) -> tuple[int, str]:
    """Runs the CLI in-process; returns (exit status, stderr)."""
    try:
        main([str(a) for a in argv])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


# Loading


@pytest.mark.usefixtures("cli_process")  # the first test starts the subprocess, so it runs beside the others
def test_lightning_checkpoint_restores_config_audio_cleaners_and_weights(trained, caplog):
    module, path = trained
    with caplog.at_level("WARNING"):
        loaded = load_for_synthesis(path)
    assert "weights_only=False" not in caplog.text  # read with torch.load(weights_only=True)
    assert not loaded.training
    assert loaded.config == module.config
    assert loaded.audio == module.audio
    assert loaded.text_cleaners == ["basic_cleaners"]
    for key, value in module.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_nvidia_format_file_loads_into_nvidias_default_model(tmp_path):
    torch.manual_seed(3)
    model = Tacotron2()
    path = tmp_path / "tacotron2_statedict.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    loaded = load_for_synthesis(path)
    assert loaded.config == Tacotron2Config()
    assert loaded.audio == AudioConfig()
    assert loaded.text_cleaners == ["english_cleaners"]
    assert torch.equal(loaded.model.embedding.weight, model.embedding.weight)
    last_conv = model.postnet.convolutions[-1][0].conv.weight
    assert torch.equal(loaded.model.postnet.convolutions[-1][0].conv.weight, last_conv)
    wav, mel, alignment, _ = synthesize(loaded, "Hi.", max_decoder_steps=4, griffin_lim_iters=2)
    assert mel.shape[0] == 80 and 1 <= mel.shape[1] <= 4 and alignment.shape[0] == mel.shape[1]


def test_incompatible_weights_name_the_file_and_keys(tmp_path):
    path = tmp_path / "tiny_nvidia.pt"
    torch.save({"state_dict": Tacotron2(tiny_config()).state_dict()}, path)
    with pytest.raises(CheckpointError, match="tiny_nvidia.pt.*v.linear_layer.weight: checkpoint \\(1, 16\\)"):
        load_for_synthesis(path)


@pytest.fixture(scope="module")
def registered(trained, tmp_path_factory):
    """The trained checkpoint as version 1 of ``tiny`` (alias ``champion``) in a SQLite model registry."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(uri, registry_uri=uri)
    run_id = client.create_run(client.create_experiment("tiny", str(folder / "artifacts"))).info.run_id
    upload = folder / "upload" / "model.ckpt"
    upload.parent.mkdir()
    upload.write_bytes(trained[1].read_bytes())
    client.log_artifact(run_id, str(upload), "registry/tiny")
    client.create_registered_model("tiny")
    version = client.create_model_version("tiny", f"{client.get_run(run_id).info.artifact_uri}/registry/tiny", run_id)
    client.set_registered_model_alias("tiny", "champion", version.version)
    return uri


@pytest.mark.parametrize("uri", ["models:/tiny@champion", "models:/tiny/1"])
def test_registry_uris_load_the_registered_checkpoint(trained, registered, uri):
    module, _ = trained
    loaded = load_checkpoint(uri, tracking_uri=registered)
    assert loaded.config == module.config and loaded.text_cleaners == ["basic_cleaners"] and not loaded.training
    for key, value in module.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


@pytest.mark.parametrize(("uri", "message"), [
    ("models:/tiny@gold", "Registered model 'tiny' has no alias 'gold'; its aliases: champion \\(version 1\\)"),
    ("models:/tiny/4", "Registered model 'tiny' has no version 4; its versions: 1"),
    ("models:/tacotron2@champion", "No registered model 'tacotron2' in sqlite:///.*; registered models: 'tiny'"),
])
def test_unknown_registry_versions_are_named(registered, uri, message):
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(uri, tracking_uri=registered)


# synthesize


def test_synthesize_runs_to_the_cap_when_the_gate_never_fires(trained):
    module, _ = trained
    wav, mel, alignment, stopped_on_gate = synthesize(module, "Hello there.", max_decoder_steps=12)
    assert not stopped_on_gate
    assert mel.shape == (80, 12)
    assert alignment.shape == (12, len("Hello there."))
    assert wav.shape == (HOP * 11,) and wav.dtype == torch.float32 and wav.abs().max() <= 1.0
    assert torch.isfinite(wav).all()


def test_synthesize_reports_a_gate_that_fires_on_the_last_allowed_step(trained, tmp_path):
    module = load_for_synthesis(trained[1])
    set_gate(module, 10.0)
    # Stopping at step 1 of 1 is a gate stop, although the frame count equals the cap.
    _, mel, _, stopped_on_gate = synthesize(module, "Hello.", max_decoder_steps=1)
    assert stopped_on_gate and mel.shape == (80, 1)
    # A 1-frame mel is padded with silence so Griffin-Lim's reflect padding fits: 4 frames of audio.
    wav, mel, alignment, stopped_on_gate = synthesize(module, "Hello.")
    assert stopped_on_gate and mel.shape == (80, 1) and alignment.shape == (1, 6)
    assert wav.shape == (HOP * 3,)


def test_synthesize_restores_training_mode(trained):
    module = load_for_synthesis(trained[1]).train()
    synthesize(module, "Hi.", max_decoder_steps=4, griffin_lim_iters=1)
    assert module.training


@pytest.mark.parametrize("text", ["~~~", "", "   "])
def test_text_with_nothing_to_say_is_named(trained, text):
    with pytest.raises(SynthesisInputError, match=f"text {text!r} has nothing to synthesise"):
        synthesize(trained[0], text)


# Command line


def test_cli_writes_the_wav_and_alignment_plot_it_would_synthesise(trained, tmp_path, capsys, caplog):
    module, path = trained
    out = tmp_path / "out" / "hello.wav"
    with caplog.at_level("INFO"):
        status, _ = run_main(capsys, "--checkpoint", path, "--text", "Hello there.", "--out", out,
                             "--max-decoder-steps", 12, "--seed", 1)
    assert status == 0
    info = soundfile.info(str(out))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (22050, 1, HOP * 11, "PCM_16")
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    assert "hit the cap of 12 decoder steps" in caplog.text
    assert f"Wrote {out}" in caplog.text

    # The CLI seeds after loading, so building the module does not shift the prenet's dropout masks.
    reloaded = load_for_synthesis(path)
    torch.manual_seed(1)
    expected = synthesize(reloaded, "Hello there.", max_decoder_steps=12).wav.numpy()
    written, _ = soundfile.read(str(out), dtype="float32")
    np.testing.assert_allclose(written, expected, atol=1.0 / 32768)


def test_cli_takes_the_sampling_rate_from_the_checkpoint(trained, tmp_path, capsys):
    checkpoint = torch.load(trained[1], map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["audio"]["sampling_rate"] = 16000
    path = tmp_path / "sixteen_k.ckpt"
    torch.save(checkpoint, path)
    out, plot = tmp_path / "a.wav", tmp_path / "plots" / "alignment.png"
    status, _ = run_main(capsys, "--checkpoint", path, "--text", "Hi.", "--out", out, "--alignment-plot", plot,
                         "--max-decoder-steps", 5)
    assert status == 0
    assert soundfile.info(str(out)).samplerate == 16000
    assert plot.read_bytes()[:8] == PNG_MAGIC and not out.with_suffix(".png").exists()


def test_missing_checkpoint_exits_2_naming_the_path(tmp_path, capsys):
    missing = tmp_path / "nowhere.ckpt"
    status, err = run_main(capsys, "--checkpoint", missing, "--text", "Hi.", "--out", tmp_path / "a.wav")
    assert status == 2
    assert str(missing) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.wav").exists()


def test_incompatible_checkpoint_exits_2_naming_a_mismatched_key(tmp_path, capsys):
    path = tmp_path / "tiny_nvidia.pt"
    torch.save({"state_dict": Tacotron2(tiny_config()).state_dict()}, path)
    status, err = run_main(capsys, "--checkpoint", path, "--text", "Hi.", "--out", tmp_path / "a.wav")
    assert status == 2
    assert str(path) in err
    assert "decoder.attention_layer.v.linear_layer.weight: checkpoint (1, 16) vs model (1, 128)" in err
    assert "NVIDIA's default config" in err


def test_not_a_checkpoint_exits_2_naming_the_file(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    status, err = run_main(capsys, "--checkpoint", path, "--text", "Hi.", "--out", tmp_path / "a.wav")
    assert status == 2 and str(path) in err and "Traceback" not in err


def test_text_that_cleans_to_nothing_exits_2_naming_it(trained, tmp_path, capsys):
    status, err = run_main(capsys, "--checkpoint", trained[1], "--text", "~~~", "--out", tmp_path / "a.wav")
    assert status == 2
    assert "'~~~'" in err and "Traceback" not in err
    assert not (tmp_path / "a.wav").exists()


def test_cli_synthesises_from_a_registry_uri(registered, tmp_path, capsys):
    out = tmp_path / "champion.wav"
    status, _ = run_main(capsys, "--checkpoint", "models:/tiny@champion", "--tracking-uri", registered, "--text", "Hi.",
                         "--out", out, "--max-decoder-steps", 5)
    assert status == 0
    assert soundfile.info(str(out)).frames == HOP * 4
    status, err = run_main(capsys, "--checkpoint", "models:/tacotron2@champion", "--tracking-uri", registered,
                           "--text", "Hi.", "--out", tmp_path / "a.wav")
    assert status == 2 and "No registered model 'tacotron2'" in err and "'tiny'" in err
    assert not (tmp_path / "a.wav").exists()


def test_out_must_be_a_wav(trained, tmp_path, capsys):
    status, err = run_main(capsys, "--checkpoint", trained[1], "--text", "Hi.", "--out", tmp_path / "a.mp3")
    assert status == 2 and "a.mp3" in err


def test_cli_runs_as_a_real_subprocess(cli_process):
    process, out, log = cli_process
    status = process.wait(timeout=120)
    output = log.read_text()
    assert status == 0, output
    assert soundfile.info(str(out)).frames == HOP * 7
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    assert "Wrote" in output and "hit the cap of 8 decoder steps" in output


# Plots


def test_alignment_figure_puts_decoder_steps_on_x_and_encoder_positions_on_y(tmp_path):
    alignment = torch.softmax(torch.randn(50, 12), dim=1)  # (S, N)
    figure = alignment_figure(alignment, title="step 100", text="Hello there, this is a test. " * 8)
    (image,) = figure.axes[0].images
    assert image.get_array().shape == (12, 50)  # rows are the y axis
    assert image.origin == "lower"
    assert len(figure.axes) == 2  # the plot and its colorbar
    path = save_figure(figure, tmp_path / "deep" / "alignment.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def test_mel_figure_stacks_target_and_prediction_on_one_colour_scale(tmp_path):
    target, predicted = torch.randn(80, 120) - 5, torch.randn(80, 90) * 3
    figure = mel_figure(target, predicted, title="target vs predicted")
    images = [ax.images[0] for ax in figure.axes if ax.images]
    assert [im.get_array().shape for im in images] == [(80, 120), (80, 90)]
    low, high = float(min(target.min(), predicted.min())), float(max(target.max(), predicted.max()))
    for image in images:
        assert image.get_clim() == pytest.approx((low, high))
        assert image.axes.get_xlim() == (-0.5, 119.5)  # one frame axis: the shorter prediction is not stretched
    assert save_figure(figure, tmp_path / "mel.png").stat().st_size > 1000
    only_predicted = mel_figure(None, predicted.numpy())
    assert sum(1 for ax in only_predicted.axes if ax.images) == 1
    assert save_figure(only_predicted, tmp_path / "mel_only.png").read_bytes()[:8] == PNG_MAGIC


def test_plots_name_bad_shapes():
    with pytest.raises(ValueError, match=r"alignment must be a non-empty 2-D array, got shape \(1, 5, 7\)"):
        alignment_figure(torch.zeros(1, 5, 7))
    with pytest.raises(ValueError, match="target mel has 80 channels but predicted mel has 16"):
        mel_figure(torch.zeros(80, 5), torch.zeros(16, 5))


def test_plots_stay_out_of_pyplot_and_draw_from_threads(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    errors: list[BaseException] = []

    def draw(index: int) -> None:
        try:
            save_figure(alignment_figure(np.random.rand(40, 10), title=str(index)), tmp_path / f"{index}.png")
        except BaseException as error:  # noqa: B036 -- reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert plt.get_fignums() == before
    assert all((tmp_path / f"{i}.png").read_bytes()[:8] == PNG_MAGIC for i in range(3))


def test_cli_attention_window_is_applied_and_checked(trained, tmp_path, capsys):
    _, path = trained
    out = tmp_path / "windowed.wav"
    status, _ = run_main(capsys, "--checkpoint", path, "--text", "Hello there, a longer sentence to read.", "--out",
                         out, "--max-decoder-steps", 20, "--seed", 1, "--attention-window", 0, 2)
    assert status == 0
    # The window as asked: a step's peak moves at most one symbol on, never back (the plot's alignment is the same
    # decode: re-run it with the same seed and window).
    reloaded = load_for_synthesis(path)
    reloaded.model.decoder.inference_window = (0, 2)
    torch.manual_seed(1)
    alignment = synthesize(reloaded, "Hello there, a longer sentence to read.", max_decoder_steps=20).alignment
    moves = alignment.argmax(1).diff()
    assert int(moves.min()) >= 0 and int(moves.max()) <= 1
    written, _ = soundfile.read(str(out), dtype="float32")
    assert written.size > 0
    status, err = run_main(capsys, "--checkpoint", path, "--text", "Hi.", "--out", out, "--attention-window", 1, 0)
    assert status == 2 and "--attention-window needs BACK >= 0 and FRONT >= 1, got 1 0" in err
