"""The end-of-run table shows how the model speaks on its own when the run decoded free-running."""

from __future__ import annotations

from tacotron2_lightning.app.training import _print_summary


def test_the_summary_shows_the_sweep_metric_and_mcd_when_logged(capsys):
    _print_summary({"output_dir": "outputs/run"}, {"val/loss": 1.25, "val/mcd": 5.4321,
                                                   "val/cepstral_decorrelation_sl": 0.9876}, "val/loss")
    shown = capsys.readouterr().err
    assert "val/cepstral_decorrelation_sl (last)" in shown and "0.9876" in shown
    assert "val/mcd (last)" in shown and "5.4321" in shown
    _print_summary({"output_dir": "outputs/run"}, {"val/loss": 1.25}, "val/loss")
    assert "val/mcd" not in capsys.readouterr().err  # a run without free-running decoding has no row for it
