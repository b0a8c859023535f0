"""Audio front end: NVIDIA Tacotron2's log-mel spectrogram in torch, a Griffin-Lim inverse, wav I/O.

The mel matches NVIDIA/tacotron2 ``layers.TacotronSTFT.mel_spectrogram`` (commit 185cd24e): periodic Hann
window, reflect padding of ``filter_length // 2`` on both sides, STFT magnitude, Slaney mel basis
(librosa ``filters.mel(htk=False, norm="slaney")``), then ``log(clamp(x, min=1e-5))``. It runs batched
on CPU or GPU, with no librosa/scipy dependency.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch

logger = logging.getLogger(__name__)

# NVIDIA asserts min >= -1 and max <= 1; allow float rounding (e.g. after resampling) but not real overs.
_RANGE_TOLERANCE = 1e-3
_LOG_CLAMP = 1e-5  # NVIDIA's dynamic_range_compression clip_val


class AudioFileError(ValueError):
    """A wav file is missing, unreadable, or not in the expected format; the message names the file."""


@dataclass
class AudioConfig:
    """Audio hyper-parameters, with NVIDIA Tacotron2's hparams names and defaults.

    Attributes:
        sampling_rate: Samples per second of the audio.
        filter_length: FFT size (n_fft).
        hop_length: Samples between successive frames.
        win_length: Hann window length; zero-padded (centred) to ``filter_length``.
        n_mel_channels: Number of mel bands.
        mel_fmin: Lowest mel band edge in Hz.
        mel_fmax: Highest mel band edge in Hz; ``None`` means ``sampling_rate / 2``.
        max_wav_value: Integer PCM full scale; int16 samples are divided by it.
    """

    sampling_rate: int = 22050
    filter_length: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mel_channels: int = 80
    mel_fmin: float = 0.0
    mel_fmax: float | None = 8000.0
    max_wav_value: float = 32768.0

    def __post_init__(self) -> None:
        for name in ("sampling_rate", "filter_length", "hop_length", "win_length", "n_mel_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"AudioConfig.{name}={value!r} is invalid; expected a positive integer")
        if self.win_length > self.filter_length:
            raise ValueError(
                f"AudioConfig.win_length={self.win_length} is invalid; expected <= filter_length "
                f"({self.filter_length})"
            )
        if not self.max_wav_value > 0:
            raise ValueError(f"AudioConfig.max_wav_value={self.max_wav_value!r} is invalid; expected > 0")
        nyquist = self.sampling_rate / 2
        if not 0 <= self.mel_fmin < nyquist:
            raise ValueError(
                f"AudioConfig.mel_fmin={self.mel_fmin!r} is invalid; expected 0 <= mel_fmin < {nyquist}"
            )
        if self.mel_fmax is not None and not self.mel_fmin < self.mel_fmax <= nyquist:
            raise ValueError(
                f"AudioConfig.mel_fmax={self.mel_fmax!r} is invalid; expected mel_fmin ({self.mel_fmin}) "
                f"< fmax <= sampling_rate / 2 ({nyquist}), or None for sampling_rate / 2"
            )

    @property
    def fmax(self) -> float:
        """The effective upper mel edge in Hz (``mel_fmax`` or Nyquist)."""
        return self.sampling_rate / 2 if self.mel_fmax is None else float(self.mel_fmax)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    mel = hz / f_sp
    log_region = hz >= min_log_hz
    mel[log_region] = min_log_hz / f_sp + np.log(hz[log_region] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    hz = mel * f_sp
    log_region = mel >= min_log_mel
    hz[log_region] = min_log_hz * np.exp(logstep * (mel[log_region] - min_log_mel))
    return hz


def mel_filter_basis(sampling_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-style area-normalised mel filters, as librosa ``filters.mel(htk=False, norm="slaney")``.

    Computed in float64 (as librosa 0.6, which NVIDIA pinned) and returned as float32.

    Returns:
        Array of shape (n_mels, n_fft // 2 + 1), dtype float32.
    """
    fft_freqs = np.linspace(0.0, sampling_rate / 2, n_fft // 2 + 1)  # (n_freq,)
    # n_mels + 2 edges: band i rises from edge i to edge i+1 and falls to edge i+2.
    mel_lo, mel_hi = _hz_to_mel(np.array([fmin, fmax]))
    edges = _mel_to_hz(np.linspace(mel_lo, mel_hi, n_mels + 2))
    widths = np.diff(edges)  # (n_mels + 1,)
    ramps = edges[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_freq)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))  # (n_mels, n_freq)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # unit area per band ("slaney" norm)
    if not np.all(weights.max(axis=1) > 0):
        logger.warning("mel basis has empty filters (n_mels=%d, n_fft=%d): too many mel bands", n_mels, n_fft)
    return weights.astype(np.float32)


class MelSpectrogram(torch.nn.Module):
    """NVIDIA Tacotron2's natural-log mel spectrogram, batched, on any device.

    Window and mel basis are non-persistent buffers: ``.to(device)`` moves them and the state_dict is
    empty, so checkpoints do not depend on this module.
    """

    def __init__(self, config: AudioConfig | None = None) -> None:
        super().__init__()
        self.config = config or AudioConfig()
        c = self.config
        basis = mel_filter_basis(c.sampling_rate, c.filter_length, c.n_mel_channels, c.mel_fmin, c.fmax)
        # scipy.signal.get_window("hann", N, fftbins=True) == periodic Hann.
        self.register_buffer("window", torch.hann_window(c.win_length, periodic=True), persistent=False)
        self.register_buffer("mel_basis", torch.from_numpy(basis), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Compute the log-mel spectrogram.

        In a zero-padded batch, the last ``filter_length // (2 * hop_length)`` valid frames of a shorter
        item differ slightly from computing it alone, since its end is followed by zeros, not reflected.

        Args:
            wav: Float waveform in [-1, 1], shape (T,) or (B, T). Computed in float32.

        Returns:
            Log-mel of shape (n_mel_channels, 1 + T // hop_length) or (B, n_mel_channels, frames).

        Raises:
            ValueError: If ``wav`` is not a 1-D/2-D float tensor, or has non-finite values or values
                outside [-1, 1] (e.g. int16 samples not divided by ``max_wav_value``).
        """
        if not torch.is_tensor(wav) or not wav.is_floating_point() or wav.dim() not in (1, 2):
            desc = f"{tuple(wav.shape)} {wav.dtype}" if torch.is_tensor(wav) else type(wav).__name__
            raise ValueError(f"wav must be a float tensor of shape (T,) or (B, T); got {desc}")
        c = self.config
        if wav.shape[-1] <= c.filter_length // 2:
            raise ValueError(
                f"wav has {wav.shape[-1]} samples; reflect padding needs more than {c.filter_length // 2}"
            )
        peak = float(wav.detach().abs().amax())  # one host sync; NaN/inf make it non-finite
        if not math.isfinite(peak) or peak > 1.0 + _RANGE_TOLERANCE:
            raise ValueError(
                f"wav peak |x| = {peak:.4g}; expected finite values in [-1, 1] "
                f"(divide integer PCM by max_wav_value={c.max_wav_value})"
            )
        # fp16 would flush the 1e-5 log floor to subnormals; keep the whole front end in float32.
        with torch.autocast(device_type=wav.device.type, enabled=False):
            spec = torch.stft(
                wav.float(), n_fft=c.filter_length, hop_length=c.hop_length, win_length=c.win_length,
                window=self.window, center=True, pad_mode="reflect", return_complex=True,
            ).abs()  # (..., n_freq, frames)
            mel = torch.matmul(self.mel_basis, spec)  # (..., n_mel, frames)
            return torch.log(torch.clamp(mel, min=_LOG_CLAMP))


def griffin_lim(
    log_mel: torch.Tensor,
    config: AudioConfig | None = None,
    n_iters: int = 60,
    power: float = 1.5,
    momentum: float = 0.99,
    seed: int = 0,
    target_peak: float = 0.95,
) -> torch.Tensor:
    """Invert a log-mel spectrogram to audio with (fast) Griffin-Lim; for listening, not for quality.

    The mel is mapped back to linear magnitude with the basis pseudo-inverse (clamped at 0), raised to
    ``power`` (> 1 sharpens harmonics, the usual Tacotron trick), and phase is recovered by ``n_iters``
    Griffin-Lim iterations with momentum (Perraudin et al. 2013; 0 gives plain Griffin-Lim) from a
    seeded random phase, so the result is deterministic.

    Args:
        log_mel: Natural-log mel, shape (n_mel, frames) or (B, n_mel, frames).
        config: Audio settings the mel was made with; defaults to ``AudioConfig()``.
        n_iters: Griffin-Lim iterations.
        power: Exponent applied to the linear magnitude before phase recovery.
        momentum: Fast Griffin-Lim momentum in [0, 1).
        seed: Seed of the random initial phase.
        target_peak: Items whose peak exceeds 1 are scaled to this peak; others are left as they are.

    Returns:
        Waveform of shape (hop_length * (frames - 1),) or (B, that), float32 in [-1, 1].
    """
    config = config or AudioConfig()
    if log_mel.dim() not in (2, 3) or log_mel.shape[-2] != config.n_mel_channels:
        raise ValueError(
            f"log_mel must be (n_mel={config.n_mel_channels}, frames) or (B, n_mel, frames); got "
            f"{tuple(log_mel.shape)}"
        )
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum={momentum} is invalid; expected 0 <= momentum < 1")
    if log_mel.shape[-1] < 4:
        # The STFT's reflect padding needs a few frames; a model that stops at once still gets a (silent) wav.
        silence = torch.full((*log_mel.shape[:-1], 4 - log_mel.shape[-1]), math.log(_LOG_CLAMP),
                             dtype=log_mel.dtype, device=log_mel.device)
        log_mel = torch.cat([log_mel, silence], dim=-1)
    c, device = config, log_mel.device
    basis = mel_filter_basis(c.sampling_rate, c.filter_length, c.n_mel_channels, c.mel_fmin, c.fmax)
    inverse = torch.from_numpy(np.linalg.pinv(basis.astype(np.float64)).astype(np.float32)).to(device)
    with torch.autocast(device_type=device.type, enabled=False):
        mag = torch.matmul(inverse, log_mel.float().exp()).clamp(min=0.0) ** power  # (..., n_freq, frames)
        stft_args = {
            "n_fft": c.filter_length,
            "hop_length": c.hop_length,
            "win_length": c.win_length,
            "window": torch.hann_window(c.win_length, periodic=True, device=device),
        }
        length = c.hop_length * (mag.shape[-1] - 1)
        # Draw the phase on CPU so the same seed gives the same audio on every device.
        generator = torch.Generator().manual_seed(seed)
        angles = torch.polar(torch.ones(mag.shape), 2 * math.pi * torch.rand(mag.shape, generator=generator))
        angles = angles.to(device)
        previous = torch.zeros_like(angles)
        for _ in range(n_iters):
            wav = torch.istft(mag * angles, length=length, center=True, **stft_args)
            rebuilt = torch.stft(wav, center=True, pad_mode="reflect", return_complex=True, **stft_args)
            accelerated = rebuilt - (momentum / (1 + momentum)) * previous if momentum else rebuilt
            angles = accelerated / accelerated.abs().clamp(min=1e-16)
            previous = rebuilt
        wav = torch.istft(mag * angles, length=length, center=True, **stft_args)
        peak = wav.abs().amax(dim=-1, keepdim=True)
        return torch.where(peak > 1.0, wav * (target_peak / peak), wav)


def load_wav(path: str | Path, expected_sampling_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Read a mono audio file as float32 in [-1, 1].

    libsndfile's float read of 16-bit PCM is exactly ``int16 / 32768``, i.e. NVIDIA's
    ``audio / max_wav_value``; other integer widths are scaled to [-1, 1] by their own full scale
    (NVIDIA's scipy read would mis-scale them). Multi-channel files are rejected rather than downmixed,
    since a silent downmix would hide a dataset problem.

    Args:
        path: Audio file (any format libsndfile reads).
        expected_sampling_rate: If given, a file at another rate raises (there is no resampling here).

    Returns:
        (wav of shape (T,), sampling_rate).

    Raises:
        AudioFileError: If the file is missing, unreadable, not mono, or at an unexpected rate.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"audio file not found: {path}")
    try:
        data, sampling_rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (T, channels)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioFileError(f"cannot read audio file {path}: {error}") from error
    if data.shape[1] != 1:
        raise AudioFileError(
            f"audio file {path} has {data.shape[1]} channels; expected mono (downmix it first)"
        )
    if expected_sampling_rate is not None and sampling_rate != expected_sampling_rate:
        raise AudioFileError(
            f"audio file {path} is {sampling_rate} Hz; expected {expected_sampling_rate} Hz "
            "(resample it first)"
        )
    return torch.from_numpy(np.ascontiguousarray(data[:, 0])), sampling_rate


def save_wav(path: str | Path, wav: torch.Tensor | np.ndarray, sampling_rate: int) -> None:
    """Write a mono waveform as 16-bit PCM wav, clipping to [-1, 1].

    Samples are scaled by 32768 and rounded (libsndfile would scale by 32767), so :func:`load_wav`
    returns them to within half an int16 step.

    Args:
        path: Destination file; its parent folder must exist.
        wav: Float waveform of shape (T,) (or (1, T)).
        sampling_rate: Samples per second.
    """
    data = wav.detach().float().cpu().numpy() if torch.is_tensor(wav) else np.asarray(wav, dtype=np.float32)
    data = np.squeeze(data, axis=0) if data.ndim == 2 and data.shape[0] == 1 else data
    if data.ndim != 1:
        raise ValueError(f"wav must have shape (T,) or (1, T); got {data.shape}")
    pcm = np.clip(np.round(np.clip(data, -1.0, 1.0) * 32768.0), -32768, 32767).astype(np.int16)
    soundfile.write(str(path), pcm, sampling_rate, subtype="PCM_16")


def resample(wav: torch.Tensor, orig_sampling_rate: int, new_sampling_rate: int, lowpass_width: int = 6,
             rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling of (T,) or (B, T) audio: Hann-windowed sinc interpolation, polyphase by conv1d.

    The kernel has one phase per output sample in a period of ``new / gcd`` samples; a strided convolution
    applies them all at once. ``rolloff`` keeps the cut-off just under the lower Nyquist frequency.
    """
    if orig_sampling_rate <= 0 or new_sampling_rate <= 0:
        raise ValueError(f"sampling rates must be positive, got {orig_sampling_rate} -> {new_sampling_rate}")
    if orig_sampling_rate == new_sampling_rate:
        return wav
    gcd = math.gcd(orig_sampling_rate, new_sampling_rate)
    orig, new = orig_sampling_rate // gcd, new_sampling_rate // gcd
    cutoff = min(orig, new) * rolloff  # in units of the reduced rates
    width = math.ceil(lowpass_width * orig / cutoff)
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig  # input offsets, (L,)
    phases = -torch.arange(new, dtype=torch.float64).unsqueeze(1) / new  # output phases, (new, 1)
    t = ((phases + taps) * cutoff).clamp(-lowpass_width, lowpass_width)
    window = torch.cos(t * math.pi / lowpass_width / 2) ** 2
    kernel = torch.special.sinc(t) * window * (cutoff / orig)  # (new, L)

    squeeze = wav.dim() == 1
    batch = wav.reshape(-1, wav.size(-1))
    padded = torch.nn.functional.pad(batch.unsqueeze(1), (width, width + orig))
    out = torch.nn.functional.conv1d(padded, kernel.to(wav.dtype).unsqueeze(1), stride=orig)  # (B, new, frames)
    out = out.transpose(1, 2).reshape(batch.size(0), -1)[:, : math.ceil(new * wav.size(-1) / orig)]
    return out[0] if squeeze else out
