"""``lightly-simmim pretrain`` refusals: a one-line error and exit status 2.

Each fails before any training, so the CLI's ``main`` runs in this process (the
``run_main`` fixture); the training itself is in ``tests/test_train.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# run_main(*args) -> (exit status, stdout, stderr): the CLI in this process.
RunMain = Callable[..., tuple[int, str, str]]

# Small enough that a refusal that came too late would still end quickly.
TINY = ["data.limit_train=64", "data.batch_size=16", "data.num_workers=0"]


@pytest.fixture
def refused(
    run_main: RunMain, assert_user_error: Callable[..., str]
) -> Callable[..., str]:
    """``(*args) -> stderr`` of ``lightly-simmim pretrain ARGS``, checked to be a
    one-line user error (exit status 2, no traceback)."""

    def run(*args: str) -> str:
        err = assert_user_error(run_main("pretrain", *args), 2)
        assert "lightly-simmim pretrain: error: " in err
        return err

    return run


def test_pretrain__misspelt_method_option_names_nearest(
    tmp_path: Path, refused: Callable[..., str]
) -> None:
    err = refused("--set", *TINY, f"output_dir={tmp_path}", "method.mask_ratoi=0.5")
    assert "Did you mean 'mask_ratio'" in err


def test_pretrain__unknown_method_lists_known_ones(
    refused: Callable[..., str],
) -> None:
    err = refused("--set", "method.name=simmin")
    assert "Did you mean 'simmim'" in err and "'byol'" in err


def test_pretrain__missing_dataset_root_shows_the_layout(
    tmp_path: Path, refused: Callable[..., str]
) -> None:
    err = refused(
        "--set",
        *TINY,
        f"output_dir={tmp_path}",
        "data.dataset=cifar10",
        f"data.root={tmp_path / 'nope'}",
    )
    assert "does not exist" in err
    assert "cifar-10-batches-py" in err  # the expected layout
    assert not (tmp_path / "simmim").exists()  # refused before the run folder


def test_pretrain__resume_with_config_is_refused(refused: Callable[..., str]) -> None:
    err = refused("--config", "fashion_mnist_cpu", "--resume", "x")
    assert "--config cannot be combined with --resume" in err


def test_pretrain__resume_of_a_folder_without_run_is_refused(
    tmp_path: Path, refused: Callable[..., str]
) -> None:
    err = refused("--resume", str(tmp_path))
    assert "Nothing to resume" in err
