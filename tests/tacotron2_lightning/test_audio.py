"""Tests of the audio front end against NVIDIA Tacotron2's own mel (tests/data reference file)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

from tacotron2_lightning.audio import (
    AudioConfig,
    AudioFileError,
    MelSpectrogram,
    griffin_lim,
    load_wav,
    mel_filter_basis,
    save_wav,
)
from tests.helpers.batches import DATA_DIR

REFERENCE_PATH = DATA_DIR / "tacotron2_small_reference.pt"


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    data = torch.load(REFERENCE_PATH, weights_only=True)["mel_reference"]
    # Stored with a batch dim: wav (1, T), mel (1, 80, frames).
    return {"wav": data["wav"][0], "mel": data["mel"][0], "mel_basis": data["mel_basis"]}


@pytest.fixture(scope="module")
def mel_fn() -> MelSpectrogram:
    return MelSpectrogram(AudioConfig())


def test_mel_basis_matches_nvidia(reference):
    basis = mel_filter_basis(22050, 1024, 80, 0.0, 8000.0)
    assert basis.dtype == np.float32
    assert basis.shape == (80, 513)
    np.testing.assert_allclose(basis, reference["mel_basis"].numpy(), rtol=0, atol=1e-7)


def test_mel_matches_nvidia(reference, mel_fn):
    mel = mel_fn(reference["wav"])
    assert mel.shape == reference["mel"].shape == (80, 1 + reference["wav"].shape[0] // 256)
    torch.testing.assert_close(mel, reference["mel"], rtol=0, atol=1e-4)


def test_mel_module_has_empty_state_dict_and_fmax_none_is_nyquist(mel_fn):
    assert list(mel_fn.state_dict()) == []
    full_band = MelSpectrogram(AudioConfig(mel_fmax=None))
    expected = mel_filter_basis(22050, 1024, 80, 0.0, 11025.0)
    np.testing.assert_array_equal(full_band.mel_basis.numpy(), expected)


def test_batched_matches_single_on_valid_frames(reference, mel_fn):
    long_wav = reference["wav"]
    short_wav = long_wav[1000:6000] * 0.5
    batch = torch.zeros(2, long_wav.shape[0])
    batch[0] = long_wav
    batch[1, : short_wav.shape[0]] = short_wav
    mels = mel_fn(batch)  # (2, 80, frames)
    assert mels.shape == (2, 80, 33)
    torch.testing.assert_close(mels[0], mel_fn(long_wav), rtol=0, atol=1e-5)
    # Frames whose window lies inside the short wav (t * hop + n_fft / 2 <= length) cannot see the padding.
    n_valid = (short_wav.shape[0] - 512) // 256 + 1
    alone = mel_fn(short_wav)
    torch.testing.assert_close(mels[1, :, :n_valid], alone[:, :n_valid], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("bad", "message"),
    [(lambda w: w * 32768.0, "max_wav_value"), (lambda w: w.clone().fill_(float("nan")), "finite")],
)
def test_mel_rejects_out_of_range_input(reference, mel_fn, bad, message):
    mel_fn(reference["wav"] * 1.0005)  # float rounding just above full scale is tolerated
    with pytest.raises(ValueError, match=message):
        mel_fn(bad(reference["wav"]))


def test_griffin_lim_reconstructs_the_mel(reference, mel_fn):
    target = reference["mel"]
    wav = griffin_lim(target, AudioConfig(), n_iters=32, power=1.0)
    assert wav.shape == (256 * (target.shape[-1] - 1),)
    assert torch.isfinite(wav).all() and wav.abs().max() <= 1.0
    error = (mel_fn(wav) - target).abs().mean()
    # Baselines: white noise at a speech-like level, and the random-phase start with no iterations.
    noise = torch.rand(wav.shape, generator=torch.Generator().manual_seed(1)) * 0.6 - 0.3
    noise_error = (mel_fn(noise) - target).abs().mean()
    start_error = (mel_fn(griffin_lim(target, n_iters=0, power=1.0)) - target).abs().mean()
    assert error < 0.25, f"mean |log-mel error| {error:.3f}"
    assert error < 0.3 * noise_error and error < 0.5 * start_error, (error, noise_error, start_error)


def test_griffin_lim_batched_deterministic_and_peak_normalised(reference):
    mels = torch.stack([reference["mel"], reference["mel"] + 2.0])  # second one ~e^2 louder: clips
    wavs = griffin_lim(mels, n_iters=4, power=1.0, seed=3)
    assert wavs.shape == (2, 256 * 32)
    torch.testing.assert_close(wavs, griffin_lim(mels, n_iters=4, power=1.0, seed=3), rtol=0, atol=0)
    assert wavs[0].abs().max() < 0.95  # quiet item left unscaled
    assert wavs[1].abs().max() == pytest.approx(0.95, abs=1e-6)


def test_griffin_lim_rejects_wrong_mel_shape(reference):
    with pytest.raises(ValueError, match="n_mel=80"):
        griffin_lim(reference["mel"][:40])


def test_wav_round_trip(tmp_path, reference):
    path = tmp_path / "clip.wav"
    wav = reference["wav"].clone()
    wav[:2] = torch.tensor([1.5, -1.5])  # out-of-range samples are clipped on save
    save_wav(path, wav, 22050)
    assert soundfile.info(str(path)).subtype == "PCM_16"
    loaded, sampling_rate = load_wav(path, expected_sampling_rate=22050)
    assert sampling_rate == 22050 and loaded.dtype == torch.float32
    torch.testing.assert_close(loaded[2:], wav[2:], rtol=0, atol=0.5 / 32768 + 1e-7)
    assert loaded[0] == pytest.approx(32767 / 32768) and loaded[1] == -1.0


def test_load_wav_pcm16_is_int16_over_32768(tmp_path):
    # NVIDIA reads int16 with scipy and divides by max_wav_value; libsndfile's float read must agree.
    pcm = np.array([-32768, -12345, -1, 0, 1, 2, 12345, 32767], dtype=np.int16)
    path = tmp_path / "pcm.wav"
    soundfile.write(str(path), pcm, 16000, subtype="PCM_16")
    loaded, _ = load_wav(path)
    np.testing.assert_array_equal(loaded.numpy(), pcm.astype(np.float32) / 32768.0)


def test_load_wav_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioFileError, match="missing.wav"):
        load_wav(missing)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not a wav file at all")
    with pytest.raises(AudioFileError, match="garbage.wav"):
        load_wav(garbage)
    stereo = tmp_path / "stereo.wav"
    soundfile.write(str(stereo), np.zeros((100, 2), dtype=np.int16), 22050)
    with pytest.raises(AudioFileError, match=r"stereo\.wav has 2 channels"):
        load_wav(stereo)
    mono = tmp_path / "mono.wav"
    soundfile.write(str(mono), np.zeros(100, dtype=np.int16), 22050)
    with pytest.raises(AudioFileError, match=r"mono\.wav is 22050 Hz; expected 16000"):
        load_wav(mono, expected_sampling_rate=16000)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"win_length": 2048}, "win_length"),
        ({"mel_fmax": 12000.0}, "mel_fmax"),
        ({"hop_length": 0}, "hop_length"),
        ({"n_mel_channels": -1}, "n_mel_channels"),
        ({"sampling_rate": 22050.0}, "sampling_rate"),
        ({"mel_fmin": -1.0}, "mel_fmin"),
        ({"max_wav_value": 0.0}, "max_wav_value"),
    ],
)
def test_audio_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"AudioConfig\.{field}="):
        AudioConfig(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mel_on_cuda_matches_cpu(reference, mel_fn):
    mel_gpu = MelSpectrogram().to("cuda")(reference["wav"].cuda())
    torch.testing.assert_close(mel_gpu.cpu(), mel_fn(reference["wav"]), rtol=0, atol=1e-4)


@pytest.mark.parametrize("orig_rate", [44100, 16000, 24000])
def test_resample_keeps_a_tone_and_the_duration(orig_rate):
    from tacotron2_lightning.audio import resample

    t = torch.arange(orig_rate) / orig_rate  # one second
    resampled = resample(torch.sin(2 * math.pi * 440 * t), orig_rate, 22050)
    assert resampled.shape == (22050,)
    expected = torch.sin(2 * math.pi * 440 * torch.arange(22050) / 22050)
    assert (resampled - expected)[200:-200].abs().max() < 5e-3


def test_resample_removes_content_above_the_new_nyquist():
    from tacotron2_lightning.audio import resample

    t = torch.arange(44100) / 44100
    high = resample(torch.sin(2 * math.pi * 15000 * t), 44100, 22050)  # 15 kHz > 11.025 kHz
    assert high[200:-200].abs().max() < 0.02
