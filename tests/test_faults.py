"""Hostile input through the real CLI: a clear error, never a traceback, never damage.

One test per case of issue #9, each in real processes on real files: the exit status,
no traceback, the message, and, where a run folder is involved, that every one of its
files is byte for byte what it was.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> the SHA-256 of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _resume(
    run_cli: Cli, folder: Path, *overrides: str
) -> subprocess.CompletedProcess[str]:
    """``lightly-simmim pretrain --resume FOLDER [--set OVERRIDES]``."""
    settings = ("--set", *overrides) if overrides else ()
    return run_cli("pretrain", "--resume", str(folder), *settings)


@pytest.fixture
def run(
    run_cli: Cli, pretrain_args: Callable[..., list[str]], tmp_path: Path
) -> Callable[..., Path]:
    """``(*overrides) -> run folder``: a tiny finished run (2 epochs of 2 steps)."""

    def train(*overrides: str) -> Path:
        args = pretrain_args("data.limit_train=32", "trainer.epochs=2", *overrides)
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        name = next(
            (o.split("=", 1)[1] for o in overrides if o.startswith("name=")), None
        )
        return tmp_path / "runs" / (name or "simmim")

    return train


# ------------------------------------------------------------------ 1, 2: settings


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.batch_size=0", "'data.batch_size' = 0 must be >= 1"),
        (
            "optim.accumulate_grad_batches=0",
            "'optim.accumulate_grad_batches' = 0 must be >= 1",
        ),
        # Found by the hostile-input audit of 2026-11-26 (tracebacks before):
        ("encoder.kwargs.dept=2", "unexpected keyword argument 'dept'"),
        ("trainer.accelerator=tpu", "torch_xla"),
    ],
    ids=["zero-batch", "zero-accumulation", "timm-rejects-a-kwarg", "no-torch-xla"],
)
def test_pretrain__bad_settings_are_one_line_errors(
    run_cli: Cli,
    pretrain_args: Callable[..., list[str]],
    assert_user_error: Callable[..., str],
    tmp_path: Path,
    override: str,
    expected: str,
) -> None:
    err = assert_user_error(run_cli(*pretrain_args(override)), 2)
    assert expected in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing was written


# ------------------------------------------------------------ 3: a truncated JPEG


def _image_folder(root: Path) -> Path:
    rng = torch.Generator().manual_seed(0)
    for label in ("a", "b"):
        folder = root / "train" / label
        folder.mkdir(parents=True)
        for i in range(8):
            pixels = torch.randint(
                0, 256, (12, 12, 3), generator=rng, dtype=torch.uint8
            )
            Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    shutil.copytree(root / "train", root / "val")
    broken = root / "train" / "a" / "truncated.jpg"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(broken, quality=95)
    broken.write_bytes(broken.read_bytes()[:300])  # cut mid-scan: PIL fails to load
    return broken


@pytest.mark.parametrize("policy", ["skip", "error"])
def test_pretrain__truncated_jpeg_without_the_check_follows_on_corrupt(
    run_cli: Cli,
    pretrain_args: Callable[..., list[str]],
    assert_user_error: Callable[..., str],
    tmp_path: Path,
    policy: str,
) -> None:
    broken = _image_folder(tmp_path / "images")
    args = pretrain_args(
        "data.dataset=image-folder",
        f"data.root={tmp_path / 'images'}",
        "data.check_images=false",
        f"data.on_corrupt={policy}",
        "data.in_chans=3",
        "data.mean=null",
        "data.std=null",
        "encoder.kwargs.in_chans=3",
        "data.limit_train=null",
        "data.batch_size=17",  # the whole folder in one batch: the bad file is read
        "data.num_workers=1",  # through a worker, as in a real run
    )
    result = run_cli(*args)
    if policy == "skip":
        assert result.returncode == 0, result.stderr
        assert "truncated.jpg" in result.stderr  # the warning names the file
        assert "Traceback" not in result.stderr
        return
    err = assert_user_error(result, 2)
    assert str(broken) in err and "data.on_corrupt=skip" in err


# ------------------------------------------------- 4: a checkpoint of something else


def _other_dict(path: Path) -> None:
    torch.save({"weights": torch.zeros(3), "note": "not a run"}, path)


@pytest.mark.parametrize("kind", ["other_dict", "other_architecture"])
def test_checkpoint_of_something_else__resume_evaluate_export_refuse_it(
    run_cli: Cli,
    run: Callable[..., Path],
    assert_user_error: Callable[..., str],
    kind: str,
) -> None:
    folder = run()
    last = folder / "checkpoints" / "last.ckpt"
    if kind == "other_dict":
        _other_dict(last)
        expected = "is not a checkpoint written by `lightly-simmim pretrain`"
    else:  # a wider model's checkpoint copied in
        other = run("name=wide", "encoder.kwargs.embed_dim=32")
        shutil.copy(other / "checkpoints" / "last.ckpt", last)
        expected = "does not fit the model"
    before = _snapshot(folder)
    for args in (
        ("pretrain", "--resume", str(folder), "--set", "trainer.epochs=3"),
        ("evaluate", str(folder)),
        ("export", str(folder)),
    ):
        err = assert_user_error(run_cli(*args), 2)
        assert expected in err, (args, err)
    assert _snapshot(folder) == before


# ---------------------------------------------- 5: a resume that changes the model


def test_resume__changing_the_model_is_refused_and_the_folder_untouched(
    run_cli: Cli, run: Callable[..., Path], assert_user_error: Callable[..., str]
) -> None:
    folder = run()
    before = _snapshot(folder)
    result = _resume(run_cli, folder, "encoder.kwargs.embed_dim=32")
    err = assert_user_error(result, 2)
    assert "A resume cannot change encoder.kwargs.embed_dim (64 -> 32)" in err
    assert "A resume may change: trainer.epochs" in err and "schedule.*" in err
    assert _snapshot(folder) == before  # byte for byte, config.yaml included
    # The folder still resumes, evaluates and exports.
    assert run_cli("evaluate", str(folder)).returncode == 0
    assert run_cli("export", str(folder)).returncode == 0


# ---------------------------------------------------- 6: a folder one cannot write


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder the processes of this test cannot write to, even as root.

    As root, permissions do not stop a write: mount a read-only tmpfs there, or mark
    the folder immutable; otherwise a mode of 0o555 does it.
    """
    folder = tmp_path / "read-only"
    folder.mkdir()
    undo: list[list[str]] = []
    if os.geteuid() == 0:
        attempts = [
            (
                ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                ["umount", str(folder)],
            ),
            (["chattr", "+i", str(folder)], ["chattr", "-i", str(folder)]),
        ]
        for command, revert in attempts:
            if (
                subprocess.run(command, capture_output=True, check=False).returncode
                == 0
            ):
                undo.append(revert)
                break
    else:
        folder.chmod(0o555)
    probe = folder / "probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        pass
    else:
        probe.unlink()
        pytest.skip("no way to make a folder read-only on this machine")
    yield folder
    for command in undo:
        subprocess.run(command, check=False)
    folder.chmod(0o755)


def test_export__into_a_read_only_folder_is_a_one_line_error(
    run_cli: Cli,
    run: Callable[..., Path],
    assert_user_error: Callable[..., str],
    read_only_folder: Path,
) -> None:
    folder = run()
    err = assert_user_error(
        run_cli("export", str(folder), "--output", str(read_only_folder / "x")), 2
    )
    assert str(read_only_folder / "x.safetensors") in err
    assert "cannot write" in err and "choose a folder you can write to" in err
    assert list(read_only_folder.iterdir()) == []  # no temporary left behind


def test_export__parent_that_is_a_file_and_an_existing_folder(
    run_cli: Cli, run: Callable[..., Path], assert_user_error: Callable[..., str]
) -> None:
    folder = run()
    blocker = folder.parent / "a-file"
    blocker.write_text("not a folder")
    err = assert_user_error(
        run_cli("export", str(folder), "--output", str(blocker / "x.safetensors")), 2
    )
    assert "is a file, not a folder" in err and "Errno" not in err
    # An existing folder as --output: the export goes inside it.
    target = folder.parent / "exports"
    target.mkdir()
    assert run_cli("export", str(folder), "--output", str(target)).returncode == 0
    assert (target / "simmim_timm.safetensors").is_file()
    assert (target / "simmim_timm.json").is_file()


# ------------------------------------------- 7: an export over a file of the run


def test_export__never_replaces_a_file_it_did_not_write(
    run_cli: Cli, run: Callable[..., Path], assert_user_error: Callable[..., str]
) -> None:
    folder = run()
    before = _snapshot(folder)
    target = folder / "metrics.safetensors"  # its side file would be metrics.json
    err = assert_user_error(run_cli("export", str(folder), "--output", str(target)), 2)
    assert "metrics.json" in err and "--overwrite" in err
    assert _snapshot(folder) == before
    # Its own earlier export is replaced without asking; --overwrite forces it.
    assert run_cli("export", str(folder)).returncode == 0
    assert run_cli("export", str(folder)).returncode == 0
    forced = run_cli("export", str(folder), "--output", str(target), "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert "lightly_simmim_export" in (folder / "metrics.json").read_text()


# ------------------------------------ 8: a resume applies the schedule it records


def _logged_rates(folder: Path) -> dict[int, float]:
    rates: dict[int, float] = {}
    for log in sorted((folder / "logs" / "csv").glob("version_*/metrics.csv")):
        with log.open() as file:
            for row in csv.DictReader(file):
                if row.get("lr"):
                    rates[int(row["step"])] = float(row["lr"])
    return rates


def test_resume__a_changed_schedule_applies_from_the_resumed_step(
    run_cli: Cli, run: Callable[..., Path]
) -> None:
    folder = run()
    changes = ("trainer.epochs=3", "optim.base_lr=0.01", "schedule.name=constant")
    result = _resume(run_cli, folder, *changes)
    assert result.returncode == 0, result.stderr
    assert "with changed settings, applied from this step on" in result.stdout
    assert "optim.base_lr 0.002 -> 0.01" in result.stdout
    assert "schedule.name 'cosine' -> 'constant'" in result.stdout
    rates = _logged_rates(folder)
    # Steps 0-3 trained with the recorded schedule, 4-5 with the new one: the
    # constant 0.01 x 16 / 512 after the (recorded) one-epoch warmup.
    assert max(rates) == 5
    for step in (4, 5):
        assert rates[step] == pytest.approx(0.01 * 16 / 512), rates
    assert "base_lr: 0.01" in (folder / "config.yaml").read_text()


# ------------------------------------------------------------------ smaller ones


def test_truncated_last_checkpoint__offers_the_intact_epoch_file(
    run_cli: Cli, run: Callable[..., Path], assert_user_error: Callable[..., str]
) -> None:
    folder = run()
    last = folder / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    err = assert_user_error(run_cli("evaluate", str(folder)), 2)
    intact = folder / "checkpoints" / "epoch=001.ckpt"
    assert (
        "truncated, corrupt or not a PyTorch checkpoint" in err
        and f"--resume {intact}" in err
    )
    resumed = _resume(run_cli, intact, "trainer.epochs=3")
    assert resumed.returncode == 0, resumed.stderr
    assert "from epoch=001.ckpt" in resumed.stdout


# ---------------------------------------- found by a hostile-input audit (2026-11-26)


def test_resume__ending_before_the_checkpoint_is_refused_and_the_folder_untouched(
    run_cli: Cli, run: Callable[..., Path], assert_user_error: Callable[..., str]
) -> None:
    folder = run()  # 2 epochs: last.ckpt was saved in epoch 2, at step 4
    before = _snapshot(folder)
    for override, expected in [
        ("trainer.epochs=1", "resume with trainer.epochs of at least 2"),
        ("trainer.max_steps=3", "resume with trainer.max_steps of at least 4"),
    ]:
        result = _resume(run_cli, folder, override)
        err = assert_user_error(result, 2)
        assert expected in err, (override, err)
        assert _snapshot(folder) == before  # config.yaml included
    # The folder still resumes with its own length (Lightning used to refuse it
    # from then on: config.yaml had been rewritten before the refusal).
    resumed = _resume(run_cli, folder)
    assert resumed.returncode == 0, resumed.stderr


def test_text_file_as_checkpoint__evaluate_export_init_from_refuse_it(
    run_cli: Cli,
    run: Callable[..., Path],
    pretrain_args: Callable[..., list[str]],
    assert_user_error: Callable[..., str],
) -> None:
    folder = run()
    (folder / "checkpoints" / "last.ckpt").write_text("hello\n")
    for args in [
        ("evaluate", str(folder)),
        ("export", str(folder)),
        (*pretrain_args("name=from-text"), "--init-from", str(folder)),
    ]:
        err = assert_user_error(run_cli(*args), 2)
        assert "cannot be read" in err and "not a PyTorch checkpoint" in err, args


def test_nan_loss__checkpoints_of_the_blown_up_weights_are_set_aside(
    run_cli: Cli, run: Callable[..., Path]
) -> None:
    """The loss that shows a divergence is computed one update after the weights blew
    up, and a checkpoint of those weights may be written in between: it is moved to
    checkpoints/diverged/ and last.ckpt is again the last weights with a finite loss
    (it used to hold weights of 1e28, and evaluate / export took them silently)."""
    folder = run()  # 2 epochs of 2 steps: epoch=001.ckpt and last.ckpt at step 4
    checkpoints = folder / "checkpoints"
    good = (checkpoints / "epoch=001.ckpt").read_bytes()
    result = _resume(
        run_cli,
        folder,
        "trainer.epochs=3",
        "optim.base_lr=1e30",  # step 5's update blows the weights up
        "schedule.warmup_epochs=0",
        "trainer.checkpoint_every_n_steps=1",  # ... and step 5 is saved
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "the loss is NaN or infinite at optimizer step 6" in result.stderr
    assert "last.ckpt is now a copy of epoch=001.ckpt (step 4)" in result.stderr
    assert (checkpoints / "last.ckpt").read_bytes() == good
    assert [p.name for p in (checkpoints / "diverged").iterdir()] == [
        "last-step=5.ckpt"
    ]
    # The folder continues from the good weights.
    assert f"--resume {folder} --set optim.base_lr=" in result.stderr
    # The folder continues from the good weights, at the run's own rate.
    resumed = _resume(run_cli, folder, "optim.base_lr=0.002")
    assert resumed.returncode == 0, resumed.stderr
    assert "from last.ckpt (step 4, epoch 1)" in resumed.stdout
