"""The ``lightly-simmim`` parser: commands, help texts, arguments, ``list``.

All in this process: ``main`` (the ``run_main`` fixture) and ``build_parser`` are
called directly.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable

import pytest

from lightly_simmim.cli import DEFAULT_CONFIG, build_parser
from lightly_simmim.config import shipped_configs

COMMANDS = (
    "pretrain",
    "evaluate",
    "benchmark",
    "export",
    "convert",
    "list",
    "throughput",
)


# run_main(*args) -> (exit status, stdout, stderr): the CLI in this process.
RunMain = Callable[..., tuple[int, str, str]]


def test_main__help_lists_every_command_and_no_demo(
    run_main: RunMain,
) -> None:
    code, out, _ = run_main("--help")
    assert code == 0
    for command in COMMANDS:  # "    NAME  help", or NAME alone on its line
        assert re.search(rf"^    {command}\b", out, flags=re.M), command
    assert "demo" not in out  # the plain-PyTorch loop is examples/ now


@pytest.mark.parametrize("command", COMMANDS)
def test_command__has_help_with_description(run_main: RunMain, command: str) -> None:
    code, out, err = run_main(command, "--help")
    assert (code, err) == (0, "")
    assert out.startswith(f"usage: lightly-simmim {command}")
    # The description is printed after the usage, before the options.
    description = out.split("\n\n")[1]
    assert len(description.split()) >= 10, description


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("pretrain", ("--config", "--set", "--resume", DEFAULT_CONFIG, "last.ckpt")),
        (
            "evaluate",
            ("--protocol", "{knn,linear,finetune,layers}", "--layer", "--pooling"),
        ),
        ("benchmark", ("--config", "--output-dir", "base.data.root=/data")),
        ("export", ("--format", "{timm}", "pretrained_cfg_overlay")),
    ],
)
def test_command__help_names_its_options(
    run_main: RunMain, command: str, words: tuple[str, ...]
) -> None:
    code, out, _ = run_main(command, "--help")
    assert code == 0
    for word in words:
        assert word in out, word


def test_main__unknown_command_exits_2_with_argparse_message(
    run_main: RunMain,
) -> None:
    code, _, err = run_main("pretrian")
    assert code == 2
    assert "invalid choice: 'pretrian'" in err and "Traceback" not in err


def test_main__no_command_exits_2(run_main: RunMain) -> None:
    code, _, err = run_main()
    assert code == 2
    assert "the following arguments are required: COMMAND" in err


def test_add_overrides__collects_every_set_in_order() -> None:
    args = build_parser().parse_args(
        ["pretrain", "--set", "a.b=1", "c=2", "--config", "x.yaml", "--set", "a.b=3"]
    )
    assert args.overrides == ["a.b=1", "c=2", "a.b=3"]  # later values win
    assert args.config == "x.yaml" and args.resume is None
    assert build_parser().parse_args(["pretrain"]).overrides == []


def test_evaluate__parses_protocol_options() -> None:
    args = build_parser().parse_args(
        shlex.split(
            "evaluate runs/x --protocol linear --epochs 3 --warmup-epochs 0.5 "
            "--batch-size 8 --lr 0.1 --layer -2 --pooling avg --output r.json"
        )
    )
    assert (args.run, args.protocol, args.epochs, args.warmup_epochs) == (
        "runs/x",
        "linear",
        3,
        0.5,
    )
    assert (args.batch_size, args.lr, args.layer, args.pooling) == (8, 0.1, -2, "avg")
    assert args.output == "r.json" and args.overrides == []


def test_benchmark__requires_a_config(run_main: RunMain) -> None:
    code, _, err = run_main("benchmark")
    assert code == 2
    assert "the following arguments are required: --config" in err


def test_list__shows_groups_datasets_and_configs(
    run_main: RunMain,
) -> None:
    code, out, _ = run_main("list")
    assert code == 0
    sections = ["methods:", "transforms:", "heads:", "losses:", "encoders:"]
    sections += ["datasets:", "configs:"]
    positions = [out.index(section) for section in sections]
    assert positions == sorted(positions)
    for word in ("simmim", "mae", "byol", "swinv2", "convnext"):
        assert f"  {word} " in out, word
    assert "fashion-mnist-embedded" in out
    for name in shipped_configs():
        assert f"  {name} " in out, name
    configs = out.split("configs:")[1].splitlines()
    default_line = next(line for line in configs if line.endswith("(default)"))
    assert default_line.split()[0] == DEFAULT_CONFIG


def test_main__help_imports_no_training_framework() -> None:
    # Handlers import Lightning (and what needs it) lazily, and the package's
    # building blocks load on first use, so `--help` imports neither them nor torch.
    code = (
        "import sys\n"
        "from lightly_simmim.cli import main\n"
        "try:\n"
        "    main(['pretrain', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'lightning', 'pytorch_lightning', 'lightning_fabric', 'timm',\n"
        "         'torch'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
