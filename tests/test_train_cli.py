"""The training loop through the real ``lightly-simmim`` CLI, in subprocesses.

Every run here is tiny (a depth-1 ViT on 32x32 images, a few dozen images, one or two
epochs, no data loader workers) but goes through the same code path as a real run:
config file and ``--set`` overrides, the registered methods, Lightning's Trainer,
checkpoints, kNN at the end.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from lightly_simmim.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    load_checkpoint,
)
from lightly_simmim.cli import main

# A depth-1, 64-wide ViT with 4x4 px tokens on 32x32 grayscale Fashion-MNIST images.
TINY = [
    "data.limit_train=64",
    "data.limit_eval=32",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.epochs=1",
    "trainer.progress_bar=false",
    "trainer.log_every_n_steps=1",
    "encoder.kwargs.depth=1",
    "encoder.kwargs.embed_dim=64",
]
VIT = {
    "img_size": 32,
    "patch_size": 4,
    "in_chans": 1,
    "embed_dim": 64,
    "depth": 1,
    "num_heads": 4,
    "global_pool": "avg",
}
# Config files for the methods whose options differ from the CPU default's (simmim).
METHOD_CONFIGS = {
    "mae": {
        "method": {
            "name": "mae",
            "decoder_dim": 32,
            "decoder_depth": 1,
            "decoder_num_heads": 4,
        },
        "encoder": {"name": "vit_tiny_patch16_224", "kwargs": VIT},
    },
    "byol": {
        "method": {
            "name": "byol",
            "projection_hidden_dim": 64,
            "projection_dim": 32,
            "prediction_hidden_dim": 64,
        },
        "encoder": {"name": "vit_tiny_patch16_224", "kwargs": VIT},
    },
}


def _cli(
    *args: str,
    cwd: Path,
    timeout: float = 180,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lightly_simmim.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def _config_file(tmp_path: Path, method: str) -> list[str]:
    """``--config FILE`` for a method (none for simmim: the CPU default)."""
    if method == "simmim":
        return []
    path = tmp_path / f"{method}.yaml"
    path.write_text(json.dumps(METHOD_CONFIGS[method]))  # JSON is YAML
    return ["--config", str(path)]


def _pretrain(
    tmp_path: Path, method: str, *overrides: str, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return _cli(
        "pretrain",
        *_config_file(tmp_path, method),
        "--set",
        *TINY,
        f"output_dir={tmp_path / 'runs'}",
        *overrides,
        cwd=tmp_path,
        **kwargs,  # type: ignore[arg-type]
    )


def _assert_user_error(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


# ------------------------------------------------------------------ fast: no training
# These fail (or print help) before any training, so they call the CLI's `main` in
# this process, except one that checks the real console entry point end to end.


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Runs ``lightly-simmim ARGS`` in-process: (exit status, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse: --help and usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_pretrain__misspelt_key_exits_2_naming_nearest(tmp_path: Path) -> None:
    result = _cli("pretrain", "--set", "optim.base_lrr=1", cwd=tmp_path)
    _assert_user_error(result, 2)
    assert "lightly-simmim pretrain: error:" in result.stderr
    assert "Did you mean 'base_lr'" in result.stderr


def test_pretrain__help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _main(capsys, "pretrain", "--help")
    assert code == 0
    for word in ("--config", "--set", "--resume", "fashion_mnist_cpu", "last.ckpt"):
        assert word in out


def test_cli__every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("evaluate", "benchmark", "export", "list"):
        code, out, _ = _main(capsys, command, "--help")
        assert code == 0, command
        assert out.startswith(f"usage: lightly-simmim {command}")


def test_list__shows_methods_and_shipped_configs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _main(capsys, "list")
    assert code == 0
    for word in (
        "methods:",
        "mae",
        "byol",
        "configs:",
        "fashion_mnist_cpu",
        "simmim_vit_base_800ep",
        "simmim_swin_base_192_100ep",
        "mae_vit_base",
        "byol_resnet50",
    ):
        assert word in out


def _user_error(capsys: pytest.CaptureFixture[str], code: int, *args: str) -> str:
    """Runs the CLI in-process, expects exit ``code`` and a one-line error; stderr."""
    status, _, err = _main(capsys, *args)
    assert status == code, err
    assert f"lightly-simmim {args[0]}: error: " in err
    assert "Traceback" not in err
    return err


def test_pretrain__misspelt_method_option_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _user_error(
        capsys,
        2,
        "pretrain",
        "--set",
        *TINY,
        f"output_dir={tmp_path}",
        "method.mask_ratoi=0.5",
    )
    assert "Did you mean 'mask_ratio'" in err


def test_pretrain__unknown_method_lists_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _user_error(capsys, 2, "pretrain", "--set", "method.name=simmin")
    assert "Did you mean 'simmim'" in err and "'byol'" in err


def test_pretrain__missing_dataset_root_exits_2_with_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _user_error(
        capsys,
        2,
        "pretrain",
        "--set",
        *TINY,
        f"output_dir={tmp_path}",
        "data.dataset=cifar10",
        f"data.root={tmp_path / 'nope'}",
    )
    assert "does not exist" in err
    assert "cifar-10-batches-py" in err  # the expected layout


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
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _image_folder(tmp_path / "images", corrupt=True)
    err = _user_error(
        capsys,
        2,
        "pretrain",
        "--set",
        *TINY,
        *RGB,
        f"output_dir={tmp_path}",
        f"data.root={root}",
        "data.on_corrupt=error",
    )
    assert "broken.png" in err
    assert "1 image file(s)" in err


def test_resume__with_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _user_error(
        capsys, 2, "pretrain", "--config", "fashion_mnist_cpu", "--resume", "x"
    )
    assert "--config cannot be combined with --resume" in err


def test_resume__without_checkpoint_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _user_error(capsys, 2, "pretrain", "--resume", str(tmp_path))
    assert "Nothing to resume" in err


def test_export__missing_run_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _user_error(capsys, 2, "export", str(tmp_path / "nope"), "--format", "timm")
    assert "neither a run folder nor a checkpoint" in err


class _NotATensor:
    """Stands for any pickled Python object a malicious checkpoint could carry."""


def test_load_checkpoint__refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _NotATensor()}, path)
    with pytest.raises(CheckpointError, match="other than tensors"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="other than tensors"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)


def test_load_checkpoint__truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1000)}, buffer)
    path = tmp_path / "cut.ckpt"
    path.write_bytes(buffer.getvalue()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


_WRITER = textwrap.dedent(
    """
    import sys, torch
    from lightly_simmim.checkpoints import AtomicCheckpointIO
    io = AtomicCheckpointIO()
    step = 0
    print("ready", flush=True)
    while True:  # until killed: ~8 MB checkpoints, back to back
        step += 1
        state = {"step": step, "w": torch.full((2_000_000,), float(step))}
        io.save_checkpoint(state, sys.argv[1])
    """
)


@pytest.mark.slow
def test_atomic_checkpoint__sigkill_while_saving_never_corrupts(tmp_path: Path) -> None:
    """SIGKILL a process that does nothing but rewrite last.ckpt, at random moments.

    Each time the file must load completely (weights only) and be self-consistent,
    and no temporary file may be mistaken for a checkpoint.
    """
    target = tmp_path / "last.ckpt"
    rng = random.Random(0)
    steps = []
    for _ in range(4):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE
        )
        assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
        time.sleep(0.3 + rng.random() * 0.5)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        state = load_checkpoint(target)
        assert torch.equal(state["w"], torch.full((2_000_000,), float(state["step"])))
        steps.append(state["step"])
    assert sum(steps) > len(steps)  # several saves completed, so kills hit saving
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "last.ckpt"
    ]


# ------------------------------------------------------------------ slow: training


def _run_folder(tmp_path: Path, name: str) -> Path:
    return tmp_path / "runs" / name


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simmim", "mae", "byol"])
def test_pretrain__each_method_runs_through_cli(tmp_path: Path, method: str) -> None:
    result = _pretrain(tmp_path, method, "trainer.reconstruction_every_n_epochs=1")
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


@pytest.mark.slow
def test_pretrain__sigkill_mid_epoch_then_resume_to_completion(tmp_path: Path) -> None:
    # 320 images / 16 = 20 steps per epoch, 2 epochs; last.ckpt every 3 steps.
    overrides = [
        "data.limit_train=320",
        "trainer.epochs=2",
        "trainer.checkpoint_every_n_steps=3",
        f"output_dir={tmp_path / 'runs'}",
    ]
    command = [sys.executable, "-m", "lightly_simmim.cli", "pretrain", "--set"]
    run = _run_folder(tmp_path, "simmim")
    last = run / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        [*command, *TINY, *overrides],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not last.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    killed_at = load_checkpoint(last)["global_step"]
    assert 0 < killed_at < 20, killed_at  # mid-epoch 0

    # A new run must not silently overwrite the killed one.
    again = _cli("pretrain", "--set", *TINY, *overrides, cwd=tmp_path)
    _assert_user_error(again, 2)
    assert "--resume" in again.stderr

    resumed = _cli("pretrain", "--resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Restored all states" in resumed.stdout + resumed.stderr
    final = load_checkpoint(last)
    assert (final["epoch"], final["global_step"]) == (1, 40)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["epoch"], metrics["global_step"]) == (2, 40)
    assert (run / "checkpoints" / "epoch=001.ckpt").is_file()
    # One CSV log per start: the killed one and the resumed one.
    assert len(list((run / "logs" / "csv").glob("version_*"))) == 2


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


def _install_probe_plugin(site: Path) -> None:
    site.mkdir()
    (site / "rank_probe.py").write_text(_PROBE)
    info = site / "rank_probe-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rank-probe\n")
    (info / "entry_points.txt").write_text(
        "[lightly.methods]\nrank_probe = rank_probe:RankProbe\n"
    )


@pytest.mark.slow
def test_pretrain__ddp_on_two_cpu_processes_with_masks_per_rank(
    tmp_path: Path,
) -> None:
    _install_probe_plugin(tmp_path / "site")
    logs = tmp_path / "masks"
    logs.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]
        ),
        "MASK_LOG_DIR": str(logs),
    }
    result = _pretrain(
        tmp_path,
        "simmim",
        "method.name=rank_probe",
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
@pytest.mark.parametrize(
    ("family", "encoder"),
    [
        ("vit", []),  # the CPU default's ViT, made tiny
        (
            "convnext",
            [
                "encoder.name=convnext_atto",
                "encoder.kwargs={in_chans: 1, depths: [1, 1, 1, 1], "
                "dims: [8, 16, 32, 64]}",
            ],
        ),
    ],
)
def test_export__timm_loads_the_encoder_with_no_missing_keys(
    tmp_path: Path, family: str, encoder: list[str]
) -> None:
    result = _pretrain(tmp_path, "simmim", "data.limit_train=32", *encoder)
    assert result.returncode == 0, result.stderr
    out = tmp_path / f"{family}.safetensors"
    export = _cli(
        "export",
        str(_run_folder(tmp_path, "simmim")),
        "--format",
        "timm",
        "--output",
        str(out),
        cwd=tmp_path,
    )
    assert export.returncode == 0, export.stderr
    info = json.loads(out.with_suffix(".json").read_text())
    model = timm.create_model(
        info["model_name"],
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(out)),
        num_classes=10,
        **info["kwargs"],
    )
    exported = load_file(out)
    classifier = model.pretrained_cfg["classifier"]
    missing = [
        key
        for key in model.state_dict()
        if key not in exported and not key.startswith(f"{classifier}.")
    ]
    assert missing == []
    state = model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in exported.items())
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)

    if family == "vit":
        # The same weights and data give the kNN accuracy of the end of training.
        report = tmp_path / "knn.json"
        run = _run_folder(tmp_path, "simmim")
        evaluate = _cli(
            "evaluate",
            "--protocol",
            "knn",
            str(run),
            "--output",
            str(report),
            cwd=tmp_path,
        )
        assert evaluate.returncode == 0, evaluate.stderr
        assert "kNN top-1:" in evaluate.stdout
        trained = json.loads((run / "metrics.json").read_text())["knn"]
        assert json.loads(report.read_text())["knn"]["top1"] == trained["top1"]
        # Linear probe and fine-tune of the same run, a couple of epochs each.
        for protocol, extra in (
            ("linear", ["--layer", "-1", "--pooling", "avg"]),
            ("finetune", ["--batch-size", "16"]),
        ):
            result = _cli(
                "evaluate",
                "--protocol",
                protocol,
                "--epochs",
                "2",
                *extra,
                str(run),
                cwd=tmp_path,
            )
            assert result.returncode == 0, result.stderr
            saved = json.loads((run / "eval" / f"{protocol}.json").read_text())
            assert 0.0 <= saved["top1"] <= saved["top5"] <= 100.0


@pytest.mark.slow
def test_pretrain__corrupt_image_warns_with_count_and_skips(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images", corrupt=True)
    result = _pretrain(tmp_path, "simmim", *RGB, f"data.root={root}")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 of 25 files, kept 24 images" in result.stderr
    assert "broken.png" in result.stderr


@pytest.mark.slow
def test_pretrain__nan_loss_stops_naming_the_step(tmp_path: Path) -> None:
    # A learning rate of 1e28 blows the weights up in one step: an honest divergence.
    result = _pretrain(
        tmp_path, "simmim", "optim.base_lr=1e30", "schedule.warmup_epochs=0"
    )
    _assert_user_error(result, 1)
    assert "lightly-simmim pretrain: error: Training stopped: the loss is" in (
        result.stderr
    )
    assert "at optimizer step " in result.stderr
    assert "optim.base_lr" in result.stderr and "precision" in result.stderr
    assert not (_run_folder(tmp_path, "simmim") / "metrics.json").exists()
