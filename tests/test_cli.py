"""The ``lightly-simmim`` command as users start it: a real process.

The parser, handlers and error table are tested in this process in ``tests/cli/``;
here only the ways in: ``python -m lightly_simmim.cli`` and the console script.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from collections.abc import Callable

from lightly_simmim.cli import main

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def test_cli__python_m_prints_help(run_cli: RunCli) -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: lightly-simmim [-h] COMMAND")
    assert "pretrain" in result.stdout and "list" in result.stdout


def test_cli__python_m_unknown_command_exits_2(
    run_cli: RunCli, assert_user_error: Callable[..., str]
) -> None:
    stderr = assert_user_error(run_cli("pretrian"), 2)
    assert "invalid choice" in stderr


def test_cli__python_m_config_error_exits_2_naming_nearest(
    run_cli: RunCli, assert_user_error: Callable[..., str]
) -> None:
    # A user error raised by a handler (not argparse), through a real process.
    stderr = assert_user_error(run_cli("pretrain", "--set", "optim.base_lrr=1"), 2)
    assert "lightly-simmim pretrain: error:" in stderr
    assert "Did you mean 'base_lr'" in stderr


def test_cli__console_script_is_main() -> None:
    (script,) = importlib.metadata.entry_points(
        group="console_scripts", name="lightly-simmim"
    )
    assert script.value == "lightly_simmim.cli:main"
    assert script.load() is main
