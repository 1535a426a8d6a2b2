import subprocess
import sys

import pytest


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lightly_simmim.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli__help_lists_commands() -> None:
    result = _run("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout and "list" in result.stdout


def test_cli__list_shows_groups_and_datasets() -> None:
    result = _run("list")
    assert result.returncode == 0, result.stderr
    for word in (
        "encoders:",
        "swinv2",
        "convnext",
        "heads:",
        "losses:",
        "simmim",
        "transforms:",
        "byol",
        "datasets:",
        "fashion-mnist-embedded",
    ):
        assert word in result.stdout


def test_cli__unknown_command_fails_cleanly() -> None:
    result = _run("pretrian")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli__demo_trains_and_writes_png(tmp_path) -> None:
    result = _run("demo", "--max-steps", "3", "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "kNN top-1 after SimMIM pretraining" in result.stdout
    assert "step 3/3" in result.stdout
    png = tmp_path / "reconstruction.png"
    assert png.stat().st_size > 0
