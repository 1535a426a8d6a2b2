"""Checkpoint files: atomic writes that survive SIGKILL, weights-only loading."""

from __future__ import annotations

import io
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lightly_simmim.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    load_checkpoint,
)


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
    with pytest.raises(
        CheckpointError, match="truncated, corrupt or not a PyTorch checkpoint"
    ):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content",
    [
        b"hello\n",  # 'h' is a pickle opcode: the weights-only unpickler's KeyError
        b"foo bar baz",  # an UnpicklingError, but not a zip of pickled objects
        b"PK",  # the first bytes of a zip archive, nothing more
        "épaisseur".encode("latin-1"),
    ],
    ids=["keyerror", "unpickling", "zip-magic", "latin-1"],
)
def test_load_checkpoint__a_file_that_is_no_checkpoint_is_a_clear_error(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "last.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "cannot be read" in message
    assert "not a PyTorch checkpoint" in message
    assert "arbitrary code" not in message  # that is for pickled objects


def test_atomic_checkpoint_io__round_trip_leaves_only_the_file(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / "last.ckpt"
    state = {"epoch": 3, "global_step": 12, "state_dict": {"w": torch.arange(4.0)}}
    AtomicCheckpointIO().save_checkpoint(state, target)
    loaded = load_checkpoint(target)
    assert (loaded["epoch"], loaded["global_step"]) == (3, 12)
    assert torch.equal(loaded["state_dict"]["w"], torch.arange(4.0))
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


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
