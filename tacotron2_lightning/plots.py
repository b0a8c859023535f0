"""Matplotlib figures of Tacotron2 outputs: attention alignments and mel spectrograms.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never through ``pyplot``: pyplot
keeps global state (a figure registry, a current figure) that is neither thread-safe nor needed headless,
and figures it creates leak unless closed. These figures are ordinary objects, freed when unreferenced.

The layout follows NVIDIA's ``plotting_utils`` / inference notebook: ``imshow`` with ``origin="lower"``,
``aspect="auto"`` and no interpolation, alignment with decoder steps on x and encoder positions on y.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_DPI = 100
_TEXT_WRAP = 100  # characters per line of the transcript under an alignment plot


def _as_2d_array(data: Any, name: str) -> np.ndarray:
    """Returns ``data`` (a tensor or array-like) as a float32 numpy matrix, naming it if it is not 2-D."""
    if hasattr(data, "detach"):  # a torch tensor, possibly on GPU, in bf16/fp16 or requiring grad
        data = data.detach().float().cpu().numpy()
    array = np.asarray(data, dtype=np.float32)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {array.shape}")
    return array


def _new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=_DPI, layout="constrained")  # room for colorbars and labels
    FigureCanvasAgg(figure)  # attaches itself; savefig then renders with Agg whatever the global backend
    return figure


def alignment_figure(alignment: Any, title: str = "", text: str | None = None) -> Figure:
    """Draws an attention alignment as NVIDIA's notebook does.

    Args:
        alignment: attention weights of shape (decoder steps S, encoder positions N), a tensor or array.
        title: figure title.
        text: the transcript, shown (wrapped) under the x axis label, as NVIDIA's ``info``.

    Returns:
        The figure, decoder step on x, encoder position on y, origin lower, with a colorbar.

    Example:
        >>> save_figure(alignment_figure(alignments[0], title="step 1000", text="Hello."), "alignment.png")
    """
    data = _as_2d_array(alignment, "alignment").T  # (N, S): encoder position is the row, i.e. the y axis
    figure = _new_figure((8, 5) if text else (8, 4))
    axes = figure.add_subplot()
    image = axes.imshow(data, aspect="auto", origin="lower", interpolation="none")
    figure.colorbar(image, ax=axes)
    xlabel = "Decoder timestep"
    if text:
        xlabel += "\n\n" + textwrap.fill(text, _TEXT_WRAP)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("Encoder timestep")
    if title:
        axes.set_title(title)
    return figure


def mel_figure(target: Any | None, predicted: Any, title: str = "") -> Figure:
    """Draws a target and a predicted mel spectrogram stacked, on one colour scale so they compare.

    Args:
        target: the ground-truth mel (n_mel_channels C, frames T), or ``None`` to draw only the prediction.
        predicted: the predicted mel (C, T'); T' may differ from T (free-running decoding).
        title: figure title.

    Returns:
        The figure: one panel per mel, frames on x, mel channel on y, origin lower, one shared colorbar.

    Raises:
        ValueError: if a mel is not 2-D or the two have different channel counts.
    """
    mels = {"predicted": _as_2d_array(predicted, "predicted mel")}
    if target is not None:
        mels = {"target": _as_2d_array(target, "target mel"), **mels}
        if mels["target"].shape[0] != mels["predicted"].shape[0]:
            raise ValueError(f"target mel has {mels['target'].shape[0]} channels but predicted mel has "
                             f"{mels['predicted'].shape[0]}")
    finite = [m[np.isfinite(m)] for m in mels.values()]
    values = np.concatenate(finite) if any(v.size for v in finite) else np.zeros(1, np.float32)
    vmin, vmax = float(values.min()), float(values.max())
    frames = max(mel.shape[1] for mel in mels.values())
    figure = _new_figure((10, 3 * len(mels)))
    axes = figure.subplots(len(mels), 1, squeeze=False)[:, 0]
    for ax, (name, mel) in zip(axes, mels.items(), strict=True):
        image = ax.imshow(mel, aspect="auto", origin="lower", interpolation="none", vmin=vmin, vmax=vmax)
        # One frame axis for both, so a prediction shorter or longer than the target shows as such.
        ax.set_xlim(-0.5, frames - 0.5)
        ax.set_ylabel(f"{name}\nmel channel")
    axes[-1].set_xlabel("Frames")
    if title:
        axes[0].set_title(title)
    figure.colorbar(image, ax=list(axes))
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Writes ``figure`` as a PNG (dpi 100) and clears it to free its artists.

    Args:
        figure: a figure from this module (or any :class:`matplotlib.figure.Figure`).
        path: destination file; missing parent folders are created.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=_DPI)
    # Not pyplot-managed, so there is nothing to close; clearing drops the image data and artists now.
    figure.clear()
    return path
