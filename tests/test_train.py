"""The training loop (``lightly_simmim.train``) through the real ``lightly-simmim``
CLI, in subprocesses.

Every run here is tiny (the ``pretrain_args`` fixture: a depth-1 ViT on 32x32 images,
a few dozen images, one or two epochs, no data loader workers) but goes through the
same code path as a real run: config file and ``--set`` overrides, the registered
methods, Lightning's Trainer, checkpoints, kNN at the end.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from lightly_simmim.checkpoints import load_checkpoint

RunCli = Callable[..., subprocess.CompletedProcess[str]]
# run_main(*args) -> (exit status, stdout, stderr): the CLI in this process.
RunMain = Callable[..., tuple[int, str, str]]


@pytest.fixture
def pretrain(pretrain_args: Callable[..., list[str]], run_cli: RunCli) -> RunCli:
    """``(*overrides, method="simmim", env=None) -> CompletedProcess``: the tiny
    ``pretrain_args`` run in a subprocess, into ``tmp_path/runs/<name>``."""

    def run(
        *overrides: str, method: str = "simmim", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*pretrain_args(*overrides, method=method), env=env)

    return run


def _run_folder(tmp_path: Path, name: str) -> Path:
    return tmp_path / "runs" / name


def _image_folder(root: Path, corrupt: bool) -> Path:
    """2 classes x 12 train / 4 val noise PNGs, plus one corrupt PNG in train/a."""
    rng = random.Random(0)
    for split, count in (("train", 12), ("val", 4)):
        for name in ("a", "b"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = bytes(rng.randrange(256) for _ in range(32 * 32 * 3))
                Image.frombytes("RGB", (32, 32), pixels).save(folder / f"{i}.png")
    if corrupt:
        good = (root / "train" / "a" / "0.png").read_bytes()
        (root / "train" / "a" / "broken.png").write_bytes(good[: len(good) // 2])
    return root


# The tiny run on RGB images from an image folder.
RGB = [
    "data.dataset=image-folder",
    "data.in_chans=3",
    "data.mean=null",  # ImageNet statistics
    "data.std=null",
    "encoder.kwargs.in_chans=3",
    "data.batch_size=8",
    "trainer.max_steps=2",
]


def test_pretrain__corrupt_image_with_on_corrupt_error_exits_2(
    tmp_path: Path,
    pretrain_args: Callable[..., list[str]],
    run_main: RunMain,
    assert_user_error: Callable[..., str],
) -> None:
    # Refused while the dataset is built, before any training: in this process.
    root = _image_folder(tmp_path / "images", corrupt=True)
    args = pretrain_args(*RGB, f"data.root={root}", "data.on_corrupt=error")
    err = assert_user_error(run_main(*args), 2)
    assert "lightly-simmim pretrain: error: " in err
    assert "broken.png" in err
    assert "1 image file(s)" in err


@pytest.mark.slow
def test_pretrain__corrupt_image_warns_with_count_and_skips(
    tmp_path: Path, pretrain: RunCli
) -> None:
    root = _image_folder(tmp_path / "images", corrupt=True)
    result = pretrain(*RGB, f"data.root={root}")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 of 25 files, kept 24 images" in result.stderr
    assert "broken.png" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simmim", "mae", "byol"])
def test_pretrain__each_method_runs_through_cli(
    tmp_path: Path, pretrain: RunCli, method: str
) -> None:
    result = pretrain("trainer.reconstruction_every_n_epochs=1", method=method)
    assert result.returncode == 0, result.stderr
    assert "kNN top-1:" in result.stdout
    run = _run_folder(tmp_path, method)
    assert "method:\n  name: " + method in (run / "config.yaml").read_text()
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4  # 64 images / 16 per batch, one epoch
    assert "hyper_parameters" not in checkpoint
    assert (run / "checkpoints" / "epoch=000.ckpt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["knn"]["top1"] <= 100.0
    assert metrics["knn"]["test_images"] == 32
    csv = next((run / "logs" / "csv").glob("version_*/metrics.csv"))
    assert "train_loss" in csv.read_text()
    pngs = sorted(p.name for p in (run / "reconstructions").glob("*.png"))
    if method == "byol":  # no reconstruction: no PNG
        assert pngs == []
    else:
        assert pngs == ["epoch_000.png", "final.png"]


def _start_until(file: Path, args: list[str], cwd: Path) -> subprocess.Popen[str]:
    """``lightly-simmim ARGS`` started in the background, returned once ``file``
    exists (the run's first checkpoint) while it is still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lightly_simmim.cli", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not file.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return process


@pytest.mark.slow
def test_pretrain__sigkill_mid_epoch_then_resume_to_completion(
    tmp_path: Path,
    pretrain_args: Callable[..., list[str]],
    run_cli: RunCli,
    assert_user_error: Callable[..., str],
) -> None:
    # 320 images / 16 = 20 steps per epoch, 2 epochs; last.ckpt every 3 steps.
    args = pretrain_args(
        "data.limit_train=320", "trainer.epochs=2", "trainer.checkpoint_every_n_steps=3"
    )
    run = _run_folder(tmp_path, "simmim")
    last = run / "checkpoints" / "last.ckpt"
    process = _start_until(last, args, tmp_path)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    killed_at = load_checkpoint(last)["global_step"]
    assert 0 < killed_at < 20, killed_at  # mid-epoch 0

    # A new run must not silently overwrite the killed one.
    err = assert_user_error(run_cli(*args), 2)
    assert "--resume" in err

    resumed = run_cli("pretrain", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert "Restored all states" in resumed.stdout + resumed.stderr
    final = load_checkpoint(last)
    assert (final["epoch"], final["global_step"]) == (1, 40)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["epoch"], metrics["global_step"]) == (2, 40)
    assert (run / "checkpoints" / "epoch=001.ckpt").is_file()
    # One CSV log per start: the killed one and the resumed one.
    assert len(list((run / "logs" / "csv").glob("version_*"))) == 2


@pytest.mark.slow
def test_pretrain__ctrl_c_says_how_to_continue(
    tmp_path: Path, pretrain_args: Callable[..., list[str]]
) -> None:
    """Lightning turns Ctrl+C into exit 1 with "attempting graceful shutdown" and
    nothing about the run; the user learns what is kept and the command to resume."""
    args = pretrain_args(
        "data.limit_train=320", "trainer.epochs=2", "trainer.checkpoint_every_n_steps=3"
    )
    last = _run_folder(tmp_path, "simmim") / "checkpoints" / "last.ckpt"
    process = _start_until(last, args, tmp_path)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    run = _run_folder(tmp_path, "simmim")
    assert f"interrupted; {run} keeps its last checkpoint" in err
    assert f"`lightly-simmim pretrain --resume {run}`" in err
    assert "Traceback" not in err


# A third-party method plugin, installed only for the DDP test: SimMIM that records a
# digest of every mask it draws in training, per global rank.
_PROBE = textwrap.dedent(
    """
    import hashlib, os
    import torch.distributed as dist
    from lightly_simmim.methods.simmim import SimMIMMethod

    class _Recorder:
        def __init__(self, generator):
            self.generator = generator

        def reseed(self, seed):
            self.generator.reseed(seed)

        def __call__(self, *args, **kwargs):
            mask = self.generator(*args, **kwargs)
            if kwargs.get("generator") is None:  # training masks, not image grids
                rank = dist.get_rank() if dist.is_initialized() else 0
                digest = hashlib.sha256(mask.cpu().numpy().tobytes()).hexdigest()
                folder = os.environ["MASK_LOG_DIR"]
                with open(os.path.join(folder, f"rank{rank}.txt"), "a") as f:
                    f.write(digest + "\\n")
            return mask

    class RankProbe(SimMIMMethod):
        def _build_modules(self, encoder):
            super()._build_modules(encoder)
            self.mask_generator = _Recorder(self.mask_generator)
    """
)


@pytest.mark.slow
def test_pretrain__ddp_on_two_cpu_processes_with_masks_per_rank(
    tmp_path: Path,
    pretrain: RunCli,
    install_plugin: Callable[[str, str, dict[str, str]], Path],
) -> None:
    site = install_plugin(
        "rank-probe",
        "[lightly.methods]\nrank_probe = rank_probe:RankProbe\n",
        {"rank_probe": _PROBE},
    )
    logs = tmp_path / "masks"
    logs.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "MASK_LOG_DIR": str(logs),
    }
    result = pretrain(
        "method.name=rank_probe",
        # A method named on the command line starts from its own defaults (32 px
        # cells: one on a 32 px image); 8 px cells, as the default config.
        "method.mask_patch_size=8",
        "trainer.strategy=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    # The global batch, and so the learning rate, counts both processes.
    assert "global batch 32 = 16 per device x 2 device(s)" in result.stdout
    assert "kNN top-1:" in result.stdout
    run = _run_folder(tmp_path, "rank_probe")
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2
    masks = {rank: (logs / f"rank{rank}.txt").read_text().split() for rank in (0, 1)}
    assert len(masks[0]) == len(masks[1]) == 2  # 64 images / (16 x 2) steps
    assert not set(masks[0]) & set(masks[1])  # every rank draws its own masks


@pytest.mark.slow
def test_pretrain__nan_loss_stops_naming_the_step(
    tmp_path: Path, pretrain: RunCli, assert_user_error: Callable[..., str]
) -> None:
    # A learning rate of 1e28 blows the weights up in one step: an honest divergence.
    result = pretrain("optim.base_lr=1e30", "schedule.warmup_epochs=0")
    err = assert_user_error(result, 1)
    assert "lightly-simmim pretrain: error: Training stopped: the loss is" in err
    assert "at optimizer step " in err
    assert "optim.base_lr" in err and "precision" in err
    assert not (_run_folder(tmp_path, "simmim") / "metrics.json").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_peak_memory_is_the_childs_own_not_its_parents() -> None:
    """A training started by a big process reports its own peak: ``ru_maxrss`` survives
    ``exec`` on Linux, which made every benchmark child after the first in-process
    fine-tune report the benchmark's own peak (1995 MB on five rows)."""
    ballast = bytearray(1536 * 2**20)  # 1.5 GiB, touched so it is resident
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))
    status = Path("/proc/self/status").read_text().splitlines()
    parent_peak = next(int(line.split()[1]) for line in status if "VmHWM" in line)
    code = (
        "import json, torch; from lightly_simmim.train import _peak_memory; "
        "print(json.dumps(_peak_memory(torch.device('cpu'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    del ballast
    child = json.loads(out)
    assert child["peak_memory_kind"] == "cpu_max_rss"
    # The child imports torch and Lightning (< 1 GiB), never the 1.5 GiB ballast.
    assert child["peak_memory_mb"] < parent_peak / 1024 - 1024
