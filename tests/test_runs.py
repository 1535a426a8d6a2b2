"""Run folders (``lightly_simmim.runs``): finding a run, rebuilding its method.

The run folders here are written directly (``config.yaml`` plus a checkpoint of a
freshly built method), without training: what ``pretrain`` writes is checked in
``tests/test_train.py``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lightly_simmim.build import build_method
from lightly_simmim.config import Config, dump_config, load_config
from lightly_simmim.runs import (
    NothingToResumeError,
    checked_run_folder,
    find_run,
    load_config_for_resume,
    load_run,
    run_dir,
)

# The CPU default's ViT at depth 1 and 16 wide: built in milliseconds.
TINY = ["encoder.kwargs.depth=1", "encoder.kwargs.embed_dim=16"]


def _write_run(
    folder: Path, config: Config, *checkpoints: str
) -> dict[str, torch.Tensor]:
    """``folder/config.yaml`` and ``folder/checkpoints/<name>`` for each name, all
    holding the weights of one method built from ``config``, moved off their
    initialisation (so a fresh build would not match them by chance)."""
    torch.manual_seed(0)
    method = build_method(config)  # with its online classifier, as trained
    with torch.no_grad():
        for parameter in method.parameters():
            parameter.add_(torch.randn_like(parameter))
    state = {key: value.clone() for key, value in method.state_dict().items()}
    dump_config(config, folder / "config.yaml")
    (folder / "checkpoints").mkdir()
    for name in checkpoints:
        torch.save(
            {"state_dict": state, "global_step": 4}, folder / "checkpoints" / name
        )
    return state


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config("fashion_mnist_cpu", [*TINY, f"output_dir={tmp_path / 'runs'}"])


def test_run_dir__output_dir_then_name_or_method(config: Config) -> None:
    assert run_dir(config) == Path(config.output_dir) / "simmim"
    assert run_dir(replace(config, name="vit-a")) == Path(config.output_dir) / "vit-a"


def test_find_run__run_folder_or_a_checkpoint_inside(
    tmp_path: Path, config: Config
) -> None:
    run = tmp_path / "run"
    _write_run(run, config, "last.ckpt", "epoch=000.ckpt")
    assert find_run(run) == (run, run / "checkpoints" / "last.ckpt")
    epoch = run / "checkpoints" / "epoch=000.ckpt"
    assert find_run(epoch) == (run, epoch)  # the nearest folder with config.yaml


def test_find_run__names_what_is_missing(tmp_path: Path, config: Config) -> None:
    with pytest.raises(FileNotFoundError, match="neither a run folder nor a"):
        find_run(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no config\.yaml"):
        find_run(empty)
    stray = tmp_path / "stray.ckpt"
    stray.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"No config\.yaml in any folder above"):
        find_run(stray)
    run = tmp_path / "run"
    _write_run(run, config)  # killed before its first checkpoint
    with pytest.raises(FileNotFoundError, match="has no checkpoint") as info:
        find_run(run)
    # Every message says what a run folder holds.
    assert "config.yaml and checkpoints/last.ckpt" in str(info.value)


def test_load_run__restores_the_weights_in_eval_mode(
    tmp_path: Path, config: Config
) -> None:
    run = tmp_path / "run"
    saved = _write_run(run, config, "last.ckpt")
    loaded_config, method, folder, checkpoint = load_run(run, ["data.limit_eval=7"])
    assert (folder, checkpoint) == (run, run / "checkpoints" / "last.ckpt")
    assert loaded_config == replace(
        config, data=replace(config.data, limit_eval=7)
    )  # the recorded config, overrides applied
    assert not method.training
    # Every weight comes back; the online classifier (a training-time probe sized
    # from the dataset) is left out.
    state = method.state_dict()
    assert set(saved) - set(state) == {
        key for key in saved if key.startswith("online_classifier.")
    }
    assert all(torch.equal(state[key], saved[key]) for key in state)


def test_load_run__checkpoint_of_another_model_is_refused(
    tmp_path: Path, config: Config
) -> None:
    run = tmp_path / "run"
    deeper = load_config("fashion_mnist_cpu", [*TINY, "encoder.kwargs.depth=2"])
    _write_run(run, deeper, "last.ckpt")
    dump_config(config, run / "config.yaml")  # the config says one block
    with pytest.raises(ValueError, match="does not fit the model") as info:
        load_run(run)
    assert "config.yaml" in str(info.value)


def test_load_config_for_resume__a_moved_run_resumes_where_it_is(
    tmp_path: Path, config: Config
) -> None:
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    _write_run(moved, config, "last.ckpt")
    resumed = load_config_for_resume(moved, ["trainer.epochs=20"])
    assert (resumed.output_dir, resumed.name) == (str(moved.parent), "renamed")
    assert run_dir(resumed) == moved
    assert resumed.trainer.epochs == 20
    assert resumed.encoder == config.encoder  # the rest as recorded


def test_load_config_for_resume__folder_without_run_is_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(NothingToResumeError, match="Nothing to resume") as info:
        load_config_for_resume(tmp_path)
    assert isinstance(info.value, FileNotFoundError)


def test_checked_run_folder__epoch_file_without_last_checkpoint(
    config: Config,
) -> None:
    """A full disk can stop a run after epoch=000.ckpt and before last.ckpt: the
    resume points to the epoch file, and a fresh start into the folder (which would
    write over it) is refused."""
    folder = run_dir(config)
    folder.mkdir(parents=True)
    _write_run(folder, config, "epoch=000.ckpt", "epoch=001.ckpt")
    epoch = folder / "checkpoints" / "epoch=001.ckpt"
    with pytest.raises(NothingToResumeError) as info:
        checked_run_folder(config, resume=True, checkpoint=None)
    assert f"--resume {epoch}`" in str(info.value)
    with pytest.raises(FileExistsError, match="already holds a checkpoint") as refused:
        checked_run_folder(config, resume=False, checkpoint=None)
    assert f"--resume {epoch}`" in str(refused.value)
    assert checked_run_folder(config, resume=True, checkpoint=epoch) == (folder, epoch)
