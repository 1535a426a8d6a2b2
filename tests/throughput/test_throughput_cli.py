"""``lightly-simmim throughput``: the parser, and the command in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lightly_simmim.cli import main
from lightly_simmim.cli import throughput as throughput_cli
from lightly_simmim.throughput import ROWS
from lightly_simmim.throughput.precision import PRECISIONS

TINY_SPEC = (
    "vit_tiny_patch16_224:img_size=16,patch_size=4,in_chans=1,embed_dim=32,depth=1,"
    "num_heads=2"
)


def test_cli_throughput__names_agree_with_the_package() -> None:
    assert throughput_cli.ROWS == ROWS
    assert throughput_cli.PRECISIONS == PRECISIONS


def test_cli_throughput__unknown_row_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["throughput", "--rows", "simmim,fast"])
    assert exited.value.code == 2
    assert "unknown rows ['fast']" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter imports torch and Lightning
def test_cli_throughput__prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    command = [sys.executable, "-m", "lightly_simmim.cli", "throughput", TINY_SPEC]
    options = ["--device", "cpu", "--batch-size", "4", "--precision", "32"]
    options += ["--rows", "simmim,byol", "--repeats", "1", "--warmup", "1"]
    options += ["--steps", "1", "--set", "method.mask_patch_size=8"]
    result = subprocess.run(
        [*command, *options, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("## lightly-simmim throughput")
    assert "| row | images/s median (min-max) | vs simmim |" in result.stdout
    assert "\n| simmim | " in result.stdout and "\n| byol | " in result.stdout
    assert f"wrote {out}" in result.stdout
    data = json.loads(out.read_text())
    assert {"machine", "setup", "rows"} <= set(data)
    assert [row["row"] for row in data["rows"]] == ["simmim", "byol"]
    assert data["setup"]["batch_size"] == 4


def test_cli_throughput__bad_target_is_a_one_line_user_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["throughput", "no_such_model_or_config", "--device", "cpu"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("lightly-simmim throughput: error: ")
    assert "encoder spec" in err and "Traceback" not in err


def test_cli_throughput__no_row_measured_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A table of absent rows is a failed measurement: exit 2, each reason shown."""
    spec = TINY_SPEC.replace("depth=1", "dept=1")  # timm rejects the keyword
    options = ["--device", "cpu", "--batch-size", "4", "--precision", "32"]
    options += ["--rows", "simmim", "--repeats", "1", "--warmup", "1", "--steps", "1"]
    status = main(["throughput", spec, *options])
    assert status == 2
    captured = capsys.readouterr()
    assert "| simmim | absent (see notes) |" in captured.out
    assert "unexpected keyword argument 'dept'" in captured.out
    assert "error: no requested row could be measured" in captured.err
    assert "Traceback" not in captured.err
