"""The Lightning Trainer of a run config (``lightly_simmim.trainer``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.strategies import DDPStrategy, FSDPStrategy

from lightly_simmim.config import ConfigError, TrainerConfig
from lightly_simmim.trainer import (
    build_trainer,
    csv_and_tensorboard,
    lightning_strategy,
    on_cpu,
)

CPU = TrainerConfig(accelerator="cpu", precision="32", progress_bar=False)


@pytest.fixture
def _restore_determinism() -> Iterator[None]:
    # Lightning's `deterministic=True` switches torch's global flag on.
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


@pytest.mark.usefixtures("_restore_determinism")
def test_build_trainer__cpu_run_is_deterministic_with_the_given_budget() -> None:
    torch.use_deterministic_algorithms(False)
    trainer = build_trainer(CPU, max_epochs=3, max_steps=7, callbacks=[])
    assert (trainer.max_epochs, trainer.max_steps) == (3, 7)
    assert trainer.num_devices == 1 and trainer.world_size == 1
    assert trainer.logger is None
    # Deterministic kernels are free on CPU: the run is repeatable.
    assert torch.are_deterministic_algorithms_enabled()
    assert not any(isinstance(c, TQDMProgressBar) for c in trainer.callbacks)


@pytest.mark.usefixtures("_restore_determinism")
def test_build_trainer__progress_bar_when_asked() -> None:
    trainer = build_trainer(replace(CPU, progress_bar=True), max_epochs=1, callbacks=[])
    assert any(isinstance(c, TQDMProgressBar) for c in trainer.callbacks)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_build_trainer__lightning_rejection_is_a_config_error_naming_settings() -> None:
    # Valid settings one by one; Lightning refuses the combination (FSDP needs GPUs).
    config = replace(CPU, strategy="fsdp", devices=2)
    with pytest.raises(ConfigError) as info:
        build_trainer(config, max_epochs=1, callbacks=[])
    message = str(info.value)
    assert "\n" not in message
    for setting in ("trainer.accelerator='cpu'", "devices=2", "strategy='fsdp'"):
        assert setting in message
    assert "GPU" in message  # Lightning's own reason, kept


def test_build_trainer__unknown_accelerator_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"accelerator='tpuu'.*Available names"):
        build_trainer(replace(CPU, accelerator="tpuu"), max_epochs=1, callbacks=[])


def test_lightning_strategy__ddp_finds_unused_parameters_others_pass() -> None:
    ddp = lightning_strategy("ddp")
    assert isinstance(ddp, DDPStrategy)
    assert ddp._ddp_kwargs == {"find_unused_parameters": True}  # no public getter
    assert lightning_strategy("ddp_find_unused_parameters_false") == (
        "ddp_find_unused_parameters_false"
    )
    assert lightning_strategy("auto") == "auto"


def test_lightning_strategy__fsdp_mixed_keeps_fp32_parameters_and_buffers() -> None:
    # Lightning's "fsdp" string under bf16-mixed casts parameters, buffers and the
    # root's inputs to bf16 (the loss targets would be rounded); autocast alone
    # lowers the matmuls, as on one device.
    for precision in ("bf16-mixed", "16-mixed"):
        fsdp = lightning_strategy("fsdp", precision)
        assert isinstance(fsdp, FSDPStrategy)
        assert fsdp.mixed_precision is not None
        dtypes = (
            fsdp.mixed_precision.param_dtype,
            fsdp.mixed_precision.reduce_dtype,
            fsdp.mixed_precision.buffer_dtype,
        )
        assert dtypes == (torch.float32,) * 3
    # Low-precision-only training keeps Lightning's casting; so does no precision.
    assert lightning_strategy("fsdp", "bf16-true") == "fsdp"
    assert lightning_strategy("fsdp") == "fsdp"


def test_on_cpu__explicit_accelerators() -> None:
    assert on_cpu(TrainerConfig(accelerator="cpu"))
    assert not on_cpu(TrainerConfig(accelerator="cuda"))


def test_csv_and_tensorboard__csv_logger_always_first(tmp_path: Path) -> None:
    loggers = csv_and_tensorboard(tmp_path, flush_every=5)
    assert isinstance(loggers[0], CSVLogger)
    assert Path(loggers[0].root_dir) == tmp_path / "csv"
    assert all(Path(logger.save_dir) == tmp_path for logger in loggers)
