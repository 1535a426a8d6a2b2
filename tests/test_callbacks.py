from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.demos.boring_classes import BoringModel

from lightly_simmim.callbacks import checkpoint_callbacks


def _fit(tmp_path: Path, keep: int | None) -> list[str]:
    trainer = pl.Trainer(
        max_epochs=4,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=checkpoint_callbacks(tmp_path, keep_epochs=keep),
        default_root_dir=tmp_path,
    )
    trainer.fit(BoringModel())
    return sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))


def test_checkpoint_callbacks__keep_epochs_keeps_the_newest(tmp_path: Path) -> None:
    assert _fit(tmp_path, keep=2) == ["epoch=002.ckpt", "epoch=003.ckpt", "last.ckpt"]


def test_checkpoint_callbacks__default_keeps_every_epoch(tmp_path: Path) -> None:
    names = _fit(tmp_path, keep=None)
    assert names == [f"epoch={i:03d}.ckpt" for i in range(4)] + ["last.ckpt"]


def test_checkpoint_callbacks__bad_values_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_epoch_checkpoints"):
        checkpoint_callbacks(tmp_path, keep_epochs=0)
    with pytest.raises(ValueError, match="checkpoint_every_n_steps"):
        checkpoint_callbacks(tmp_path, every_n_steps=0)
