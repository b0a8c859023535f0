"""ValidationMedia's checkpointed state: the validations counted survive a resume, whatever its settings."""

from __future__ import annotations

import torch

from tacotron2_lightning.media import ValidationMedia
from tacotron2_lightning.text.sequence import text_to_sequence
from tests.helpers.toy_module import ToyRegression, toy_loader, toy_trainer


class WithExample(ToyRegression):
    """ToyRegression with a small validation example of the shape Tacotron2Module keeps."""

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        text = torch.tensor(text_to_sequence("hi there", ["english_cleaners"]))
        frames = 6
        self.last_validation_example = {"text": text, "mel_target": torch.rand(8, frames),
                                        "mel_predicted": torch.rand(8, frames),
                                        "alignment": torch.softmax(torch.rand(frames, len(text)), dim=1)}


def fit(tmp_path, media, max_steps, ckpt_path=None):
    trainer = toy_trainer(tmp_path, [media], max_steps=max_steps, val_check_interval=2)
    trainer.fit(WithExample(), toy_loader(), toy_loader(), ckpt_path=ckpt_path)
    return trainer


def test_resume_with_another_every_n_validations_counts_on(tmp_path):
    first = ValidationMedia(every_n_validations=1, griffin_lim_iters=0)
    fit(tmp_path, first, max_steps=4).save_checkpoint(tmp_path / "run.ckpt")
    assert first.validations == 2 and first.latest["step"] == 4
    resumed = ValidationMedia(every_n_validations=2, griffin_lim_iters=0)
    assert resumed.state_key == first.state_key
    fit(tmp_path, resumed, max_steps=8, ckpt_path=tmp_path / "run.ckpt")
    # Validations 3 and 4 at steps 6 and 8: counted on from 2, the 3rd is drawn and the 4th skipped.
    assert resumed.validations == 4 and resumed.latest["step"] == 6
