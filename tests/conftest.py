"""Fixtures shared by the whole suite.

- ``_one_thread``, ``_no_network`` (autouse): one torch thread; no network access.
- ``tiny_timm_kwargs``, ``tiny_timm_model``: tiny timm models per encoder family.
- ``run_cli``, ``run_main``, ``assert_user_error``: ``lightly-simmim`` in a
  subprocess or in this process, and the check of a user error.
- ``pretrain_args``, ``pretrained_run``: a tiny ``lightly-simmim pretrain`` run:
  its arguments, or a run folder trained once per session.
- ``install_plugin``: a fake installed distribution with entry points.

Everything shared is a fixture (a fixture may return a function), not an importable
helper: the test folders have no ``__init__.py``, so pytest imports every module by its
base name and a helper module would clash with any other module of that name.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import pytest
import timm
import torch
from torch import nn

from lightly_simmim import registry
from lightly_simmim.cli import DEFAULT_CONFIG, main
from lightly_simmim.config import load_config, to_dict
from lightly_simmim.encoders import SIMMIM_VIT_KWARGS


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # The tensors in these tests are tiny: splitting each op over threads costs more
    # than the op, and far more when other processes share the two cores (OpenMP waits
    # for a descheduled thread). One thread keeps in-process tests fast and stable;
    # subprocesses (the CLI tests) keep torch's default.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------ no network


def _is_local(host: object) -> bool:
    """Whether a socket address host is this machine (loopback or its own name)."""
    if host is None or host in ("localhost", socket.gethostname()):
        return True
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    try:
        # "fe80::1%eth0": the zone index is not part of the address.
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # another host name: resolving it is already network access


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fails the test on any connection (or name lookup) beyond this machine.

    Loopback stays open: Lightning's 2-process DDP on CPU talks over 127.0.0.1.
    Attempts are also recorded and fail the test at teardown, so code that catches
    the error (a download falling back to something else) cannot hide one. Only
    this process is guarded, not the subprocesses of the CLI tests.
    """
    attempts: list[str] = []

    def refuse(what: str) -> NoReturn:
        attempts.append(what)
        raise ConnectionRefusedError(f"network access attempted in a test: {what}")

    def guard(method: Callable[..., Any]) -> Callable[..., Any]:
        def connect(self: socket.socket, address: Any) -> Any:
            # AF_UNIX addresses are file paths: local by definition.
            if self.family != socket.AF_UNIX and not _is_local(address[0]):
                refuse(f"connect to {address!r}")
            return method(self, address)

        return connect

    getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local(host):
            refuse(f"name lookup of {host!r}")
        return getaddrinfo(host, *args, **kwargs)

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, guard(getattr(socket.socket, name)))
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield
    if attempts:
        pytest.fail("network access attempted: " + "; ".join(attempts))


# ----------------------------------------------------------------------- tiny models

# family -> (timm model name, create_model kwargs other than img_size / in_chans):
# one or two blocks per stage, 8-64 channels wide, a forward pass in milliseconds.
_VIT = {"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}
_SWIN = {"embed_dim": 16, "depths": (1, 1), "num_heads": (1, 2), "window_size": 4}
_RESNET = {"layers": [1, 1, 1, 1], "channels": (8, 16, 32, 64), "stem_width": 8}
_TINY_TIMM: dict[str, tuple[str, dict[str, Any]]] = {
    "vit": ("vit_tiny_patch16_224", _VIT),
    # Distilled DeiT: a class and a distillation token in front of the patches.
    "deit": ("deit_tiny_distilled_patch16_224", _VIT),
    # The paper's ViT (shared relative position bias, layer scale), two blocks.
    "beit": ("beit_base_patch16_224", {**_VIT, "depth": 2, **SIMMIM_VIT_KWARGS}),
    "swin": ("swin_tiny_patch4_window7_224", _SWIN),
    "swinv2": ("swinv2_tiny_window8_256", _SWIN),
    "convnext": ("convnext_atto", {"dims": (8, 16, 16, 16), "depths": (1, 1, 1, 1)}),
    # BYOL's. zero_init_last would block each residual branch's gradient at step 0.
    "resnet": ("resnet18", {**_RESNET, "zero_init_last": False}),
}
# Families without a fixed input size: timm takes no img_size for them.
_ANY_SIZE = {"convnext", "resnet"}


def _tiny_spec(family: str) -> tuple[str, dict[str, Any]]:
    if family in _TINY_TIMM:
        return _TINY_TIMM[family]
    own = {
        name
        for name, _, value in registry.describe("encoders")
        if value.startswith("lightly_simmim.")
    }
    if family in own:
        pytest.fail(f"Add a tiny model for encoder family {family!r} to conftest.py.")
    pytest.skip(f"{family!r} is a third-party family without a tiny test model.")


@pytest.fixture(scope="session")
def tiny_timm_kwargs() -> Callable[..., tuple[str, dict[str, Any]]]:
    """``(family, *, img_size=32, in_chans=3, **overrides) -> (timm name, kwargs)``.

    ``timm.create_model`` arguments of a tiny ``vit``, ``deit``, ``beit`` (the
    paper's ViT), ``swin``, ``swinv2``, ``convnext`` or ``resnet``, as a config's
    ``encoder`` section or ``from_timm(name, **kwargs)`` take them. No ``img_size``
    for any-size families or ``img_size=None``; an override of None removes that
    setting. An own encoder family missing here fails the test, another skips it.
    """

    def arguments(
        family: str,
        *,
        img_size: int | tuple[int, int] | None = 32,
        in_chans: int = 3,
        **overrides: Any,
    ) -> tuple[str, dict[str, Any]]:
        name, defaults = _tiny_spec(family)
        merged = {**defaults, "in_chans": in_chans, **overrides}
        if img_size is not None and family not in _ANY_SIZE:
            merged["img_size"] = img_size
        # None drops a setting: timm's default (or a derived model name's) applies.
        return name, {key: value for key, value in merged.items() if value is not None}

    return arguments


@pytest.fixture(scope="session")
def tiny_timm_model(
    tiny_timm_kwargs: Callable[..., tuple[str, dict[str, Any]]],
) -> Callable[..., nn.Module]:
    """``(family, *, img_size=32, in_chans=3, num_classes=0, **overrides) -> model``:
    a new tiny timm model (see ``tiny_timm_kwargs``), no classifier by default."""

    def create(family: str, *, num_classes: int = 0, **kwargs: Any) -> nn.Module:
        name, create_kwargs = tiny_timm_kwargs(family, **kwargs)
        model: nn.Module = timm.create_model(
            name, num_classes=num_classes, **create_kwargs
        )
        return model

    return create


# ------------------------------------------------------------------------------- CLI


class CliResult(NamedTuple):
    """What an in-process ``lightly-simmim`` run gives, named as a subprocess's."""

    returncode: int
    stdout: str
    stderr: str


def _cli_subprocess(
    *args: str,
    cwd: Path,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lightly_simmim.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=None if env is None else dict(env),
        check=False,
    )


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``(*args, cwd=tmp_path, timeout=300, env=None) -> CompletedProcess``.

    ``python -m lightly_simmim.cli ARGS`` in a real process, output captured as
    text; ``env`` replaces the whole environment (None: this process's).
    """

    def run(
        *args: str,
        cwd: Path | None = None,
        timeout: float = 300,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return _cli_subprocess(
            *args, cwd=tmp_path if cwd is None else cwd, timeout=timeout, env=env
        )

    return run


@pytest.fixture
def run_main(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """``(*args) -> CliResult``: ``lightly-simmim ARGS`` run by ``main`` in this
    process (fast: no interpreter start); argparse's exits become the status."""

    def run(*args: str) -> CliResult:
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse: --help and usage errors
            # None is success; a message (not a number) is a failure.
            code = exit_.code if isinstance(exit_.code, int) else int(bool(exit_.code))
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def _check_user_error(
    result: subprocess.CompletedProcess[str] | CliResult, code: int
) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


@pytest.fixture(scope="session")
def assert_user_error() -> Callable[..., str]:
    """``(result, code) -> stderr``: the run (subprocess or ``run_main``) exited with
    ``code`` and printed no traceback (a user error is a message, not a crash)."""
    return _check_user_error


# -------------------------------------------------------------- a tiny pretraining

# The CPU default config made tiny: a depth-1, 64-wide ViT on 32 px grayscale images,
# 64 training / 32 test images of the embedded Fashion-MNIST, one epoch of 4 steps of
# 16 images, no data loader workers.
_TINY_PRETRAIN = [
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
# Small method sections for the tiny ViT (simmim's are the default config's).
_METHOD_SECTIONS: dict[str, dict[str, Any]] = {
    "mae": {"decoder_dim": 32, "decoder_depth": 1, "decoder_num_heads": 4},
    "byol": {
        "projection_hidden_dim": 64,
        "projection_dim": 32,
        "prediction_hidden_dim": 64,
    },
}


def _pretrain_args(folder: Path, method: str, overrides: tuple[str, ...]) -> list[str]:
    """``pretrain`` arguments of a tiny run into ``folder/runs/<name>``."""
    config: list[str] = []
    if method != "simmim":
        path = folder / f"{method}.yaml"
        section = {"name": method, **_METHOD_SECTIONS[method]}
        # The CPU default's ViT, which the --set values below make tiny. JSON is YAML.
        encoder = to_dict(load_config(DEFAULT_CONFIG))["encoder"]
        path.write_text(json.dumps({"method": section, "encoder": encoder}))
        config = ["--config", str(path)]
    return [
        "pretrain",
        *config,
        "--set",
        *_TINY_PRETRAIN,
        f"output_dir={folder / 'runs'}",
        *overrides,
    ]


@pytest.fixture
def pretrain_args(tmp_path: Path) -> Callable[..., list[str]]:
    """``(*overrides, method="simmim") -> lightly-simmim arguments`` (for
    ``run_cli``) of ``pretrain`` of a tiny run (4 steps of a depth-1 ViT on 64
    embedded Fashion-MNIST images, kNN on 32) into ``tmp_path/runs/<name>``. A
    method other than simmim comes from a ``--config`` file written into
    ``tmp_path``; ``overrides`` are ``--set`` values after the tiny ones."""

    def args(*overrides: str, method: str = "simmim") -> list[str]:
        return _pretrain_args(tmp_path, method, overrides)

    return args


@pytest.fixture(scope="session")
def pretrained_run(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_timm_kwargs: Callable[..., tuple[str, dict[str, Any]]],
) -> Callable[[str], Path]:
    """``(family) -> run folder``: a tiny SimMIM run (2 steps on 32 images), trained
    once per session and family: ``"vit"`` (the CPU default's ViT, made tiny) or
    ``"convnext"``. Tests may add files (``eval/``); they must not change others."""
    runs: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in runs:
            encoder: list[str] = []
            if family != "vit":
                name, kwargs = tiny_timm_kwargs(family, in_chans=1)
                # JSON is YAML: a flow mapping replaces the default's kwargs.
                encoder = [
                    f"encoder.name={name}",
                    f"encoder.kwargs={json.dumps(kwargs)}",
                ]
            folder = tmp_path_factory.mktemp(f"pretrained-{family}")
            args = _pretrain_args(folder, "simmim", ("data.limit_train=32", *encoder))
            result = _cli_subprocess(*args, cwd=folder)
            assert result.returncode == 0, result.stderr
            runs[family] = folder / "runs" / "simmim"
        return runs[family]

    return get


# --------------------------------------------------------------------------- plugins


@pytest.fixture
def install_plugin(
    tmp_path: Path,
) -> Iterator[Callable[[str, str, dict[str, str]], Path]]:
    """``(distribution_name, entry_points_txt, {module: source}) -> site folder``.

    A real (if tiny) distribution: ``<name>-1.0.dist-info`` and the modules in a
    folder first on ``sys.path``, found through ``importlib.metadata`` as an
    installed one; the registry is refreshed. Call it once per distribution.
    Afterwards the folder and its modules are forgotten and the registry refreshed.
    """
    site = tmp_path / "site-packages"
    site.mkdir()
    sys.path.insert(0, str(site))

    def install(
        distribution: str, entry_points_txt: str, modules: dict[str, str]
    ) -> Path:
        info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n"
        )
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points_txt))
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
        registry.refresh()  # also clears the import system's directory caches
        return site

    yield install
    sys.path.remove(str(site))
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file is not None and Path(file).is_relative_to(site):
            del sys.modules[name]
    registry.refresh()
