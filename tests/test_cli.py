"""The ``lightly-simmim`` command as users start it: a real process.

The parser, handlers and error table are tested in this process in ``tests/cli/``;
here only the ways in: ``python -m lightly_simmim.cli`` and the console script.
"""

import importlib.metadata
import subprocess
import sys

from lightly_simmim.cli import main


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lightly_simmim.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli__python_m_prints_help() -> None:
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: lightly-simmim [-h] COMMAND")
    assert "pretrain" in result.stdout and "list" in result.stdout


def test_cli__python_m_unknown_command_exits_2() -> None:
    result = _run("pretrian")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr


def test_cli__console_script_is_main() -> None:
    (script,) = importlib.metadata.entry_points(
        group="console_scripts", name="lightly-simmim"
    )
    assert script.value == "lightly_simmim.cli:main"
    assert script.load() is main
