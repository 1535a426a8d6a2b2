"""The CLI's exception table: exit status and a one-line message, never a traceback.

Each test runs ``lightly-simmim list`` in this process with its handler replaced by
one that raises, so the real parser, ``main`` and table are exercised.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from torch.utils.data import DataLoader, Dataset

from lightly_simmim import registry
from lightly_simmim.cli import listing, main
from lightly_simmim.cli.errors import EXIT_RULES, describe, find_rule
from lightly_simmim.config import ConfigError


def _run_raising(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    handler: Callable[[argparse.Namespace], int],
) -> tuple[int, str]:
    """``lightly-simmim list`` with ``handler`` as its handler: (status, stderr)."""
    monkeypatch.delenv("LIGHTLY_SIMMIM_TRACEBACK", raising=False)
    # build_parser() reads the module attribute when it adds the command.
    monkeypatch.setattr(listing, "run", handler)
    status = main(["list"])
    out, err = capsys.readouterr()
    assert out == ""
    return status, err


def _raises(error: BaseException) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        raise error

    return handler


def _plugin_error() -> registry.PluginLoadError:
    return registry.PluginLoadError(
        "Plugin 'x' (lightly.losses) from my-dist failed to import: boom",
        group="lightly.losses",
        plugin="x",
        distribution="my-dist",
        value="my_pkg.loss:X",
    )


def test_exit_rules__no_row_is_shadowed_by_an_earlier_one() -> None:
    # First match wins, so a row below its own base class would never be used.
    for above, below in itertools.combinations(EXIT_RULES, 2):
        assert not issubclass(below.error, above.error), (above, below)


def test_exit_rules__subclasses_of_oserror_keep_their_own_status() -> None:
    # ChildProcessError (a failed benchmark row) is an OSError but exits with 1.
    assert issubclass(ChildProcessError, OSError)
    rule = find_rule(ChildProcessError("row failed"))
    assert rule is not None and rule.status == 1
    rule = find_rule(OSError(errno.ENOSPC, "No space left on device"))
    assert rule is not None and rule.status == 2


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ChildProcessError("Pretraining 'mae' failed (exit status 1)."), 1),
        (FloatingPointError("Training stopped: the loss is nan."), 1),
        (ValueError("data.batch_size must be positive."), 2),
        (ConfigError("Unknown key 'optim.base_lrr'."), 2),
        (FileNotFoundError("No run folder at 'runs/x'."), 2),
        (FileExistsError("runs/x already holds a checkpoint."), 2),
        (_plugin_error(), 2),
    ],
    ids=lambda value: (
        type(value).__name__ if isinstance(value, Exception) else str(value)
    ),
)
def test_main__error_table_gives_status_and_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    status: int,
) -> None:
    code, err = _run_raising(monkeypatch, capsys, _raises(error))
    assert code == status
    assert err == f"lightly-simmim list: error: {error}\n"


def test_main__unknown_component_message_is_not_quoted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A KeyError subclass: str() of a plain KeyError would wrap it in quotes.
    error = registry.UnknownComponentError(
        "lightly.losses", "simim", ["simmim"], "simmim"
    )
    code, err = _run_raising(monkeypatch, capsys, _raises(error))
    assert code == 2
    assert err.startswith("lightly-simmim list: error: ")
    assert "Did you mean 'simmim'?" in err and "error: '" not in err


def test_main__oserror_names_path_and_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    error = OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/runs/simmim")
    code, err = _run_raising(monkeypatch, capsys, _raises(error))
    assert code == 2
    assert err == (
        "lightly-simmim list: error: OS error: /mnt/ro/runs/simmim: "
        "Read-only file system\n"
    )


def test_main__real_file_system_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # The parent of the run folder is a file: the OS says "Not a directory".
    parent = tmp_path / "runs"
    parent.write_text("not a folder")

    def make_run_folder(args: argparse.Namespace) -> int:
        (parent / "simmim").mkdir()
        return 0

    code, err = _run_raising(monkeypatch, capsys, make_run_folder)
    assert code == 2
    assert err == (
        f"lightly-simmim list: error: OS error: {parent / 'simmim'}: Not a directory\n"
    )
    assert "Errno" not in err

    def rename_onto_folder(args: argparse.Namespace) -> int:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "c").touch()
        os.rename(tmp_path / "a", tmp_path / "b")  # b is not empty
        return 0

    code, err = _run_raising(monkeypatch, capsys, rename_onto_folder)
    assert code == 2
    assert f"{tmp_path / 'a'} -> {tmp_path / 'b'}: Directory not empty" in err


def test_main__missing_file_from_the_os_names_the_path(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    missing = tmp_path / "runs" / "config.yaml"

    def read(args: argparse.Namespace) -> int:
        missing.read_text()
        return 0

    code, err = _run_raising(monkeypatch, capsys, read)
    assert code == 2  # FileNotFoundError's row: no "OS error" prefix
    assert err == f"lightly-simmim list: error: {missing}: No such file or directory\n"


def test_main__other_exceptions_keep_their_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not a user error: a bug, which must not be hidden behind a one-line message.
    with pytest.raises(RuntimeError, match="a bug"):
        _run_raising(monkeypatch, capsys, _raises(RuntimeError("a bug")))
    with pytest.raises(KeyboardInterrupt):
        _run_raising(monkeypatch, capsys, _raises(KeyboardInterrupt()))


def test_main__traceback_variable_reraises_user_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listing, "run", _raises(ConfigError("bad key")))
    monkeypatch.setenv("LIGHTLY_SIMMIM_TRACEBACK", "1")
    with pytest.raises(ConfigError, match="bad key"):
        main(["list"])


def test_main__handler_status_is_returned(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run_raising(monkeypatch, capsys, lambda args: 0)
    assert (code, err) == (0, "")


# ------------------------------------------------ errors raised in data loader workers


class _Failing(Dataset[int]):
    """A dataset whose item 3 raises ``error`` (in a data loader worker)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if index == 3:
            try:
                raise KeyError(index)
            except KeyError as cause:  # a chained cause: two tracebacks in the text
                raise self.error from cause
        return index


def _load_in_worker(error: Exception) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        batches = iter(DataLoader(_Failing(error), batch_size=2, num_workers=1))
        try:
            for _ in batches:
                pass
        finally:
            # PyTorch's re-raise leaves the iterator in a reference cycle; shut its
            # worker down now, not in a later test's garbage collection (a 5 s join).
            batches._shutdown_workers()  # type: ignore[attr-defined]
        return 0

    return handler


def test_main__worker_error_is_reduced_to_the_original_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    error = ValueError("cat/003.png is not an image; delete it or set on_corrupt")
    code, err = _run_raising(monkeypatch, capsys, _load_in_worker(error))
    assert code == 2
    assert err == f"lightly-simmim list: error: {error}\n"


def test_main__worker_oserror_names_path_and_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # PyTorch rebuilds the error from its text only: errno and filename are lost.
    error = OSError(errno.EACCES, os.strerror(errno.EACCES), "/data/cat/003.png")
    code, err = _run_raising(monkeypatch, capsys, _load_in_worker(error))
    assert code == 2
    assert err == (
        "lightly-simmim list: error: OS error: /data/cat/003.png: Permission denied\n"
    )


def test_describe__worker_text_keeps_a_multi_line_message() -> None:
    text = (
        "Caught ValueError in DataLoader worker process 0.\n"
        "Original Traceback (most recent call last):\n"
        '  File "/x/worker.py", line 1, in _worker_loop\n'
        "    data = fetcher.fetch(index)\n"
        "           ^^^^^^^^^^^^^^^^^^^^\n"
        "lightly_simmim.data.CorruptImageError: 2 corrupt images:\n"
        "a.png\n"
        "b.png\n"
    )
    assert describe(ValueError(text)) == "2 corrupt images:\na.png\nb.png"


def test_describe__plain_messages_are_unchanged() -> None:
    message = "Traceback-free: a value of 'x: y' stays as it is"
    assert describe(ValueError(message)) == message
    assert describe(FileNotFoundError("No run at runs/x.")) == "No run at runs/x."
    # Only an OSError's text is read as "[Errno N] reason: 'path'".
    assert describe(ValueError("[Errno 5] odd: 'x'")) == "[Errno 5] odd: 'x'"
