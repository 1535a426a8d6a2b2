"""What FSDP's sharding changes, with real FSDP on two CPU processes (gloo).

FSDP (``use_orig_params=True``, Lightning's default) turns every parameter into a
1-D view of the rank's shard outside the wrapped root's forward:
- before Lightning builds the optimiser, where timm's grouping, which exempts 1-D
  parameters from weight decay, would exempt every weight matrix;
- in a callback that runs the module itself (the reconstruction PNGs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightly_simmim.evaluation import FinetuneModule, FinetuneRecipe, timm_classifier
from lightly_simmim.evaluation.optimizer import no_weight_decay_names
from lightly_simmim.methods.optimization import OptimizedModule

# Rank 0 writes {"plain": ..., "sharded": ..., "recorded": ...}: each parameter's
# weight decay by name, for the unwrapped model, the FSDP-wrapped one as timm sees
# it, and the wrapped one with the dims recorded before wrapping.
_SCRIPT = """
import json, sys
import torch, torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel
from lightly_simmim.optim import create_optimizer, parameter_dims

layer_decay = None if sys.argv[2] == "none" else float(sys.argv[2])

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3))

def decay(model, dims=None):
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = create_optimizer(
        model, lr=1e-3, weight_decay=0.1, layer_decay=layer_decay, dims=dims,
        fused=False,
    )
    return {names[id(p)]: g["weight_decay"] for g in optimizer.param_groups
            for p in g["params"]}

dist.init_process_group("gloo")
plain = decay(build())
model = build()
dims = parameter_dims(model)
FullyShardedDataParallel(model, use_orig_params=True, device_id=torch.device("cpu"))
shapes = {n: list(p.shape) for n, p in model.named_parameters()}
result = {"plain": plain, "sharded": decay(model), "recorded": decay(model, dims),
          "shapes": shapes}
if dist.get_rank() == 0:
    with open(sys.argv[1], "w") as file:
        json.dump(result, file)
dist.destroy_process_group()
"""


# Python's arguments that start a script in two processes.
_TWO_RANKS = ["-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]


def _run_script(
    tmp_path: Path,
    script: str,
    *args: str,
    launcher: Sequence[str] = _TWO_RANKS,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Writes ``script`` into ``tmp_path`` and runs it with ``python *launcher``,
    one thread per process; fails with the stderr if it fails."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [sys.executable, *launcher, str(path), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=timeout,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
@pytest.mark.parametrize("layer_decay", ["none", "0.5"])
def test_create_optimizer__recorded_dims_keep_weight_decay_on_fsdp_shards(
    tmp_path: Path, layer_decay: str
) -> None:
    out = tmp_path / "groups.json"
    _run_script(tmp_path, _SCRIPT, str(out), layer_decay)
    result: dict[str, Any] = json.loads(out.read_text())
    # The premise: FSDP hands the optimiser flat 1-D shards, and without the
    # recorded dims the weight matrices lose their weight decay.
    assert all(len(shape) == 1 for shape in result["shapes"].values())
    assert result["sharded"]["0.weight"] == 0.0
    assert result["plain"] == {
        "0.weight": 0.1,
        "0.bias": 0.0,
        "1.weight": 0.0,
        "1.bias": 0.0,
        "2.weight": 0.1,
        "2.bias": 0.0,
    }
    assert result["recorded"] == result["plain"]


class _Flattening(SingleDeviceStrategy):
    """Replaces every parameter by a flat copy before the optimiser is built, as
    FSDP's sharding does (one process: FSDP itself needs GPUs under Lightning)."""

    def setup(self, trainer: pl.Trainer) -> None:
        assert self.model is not None
        for module in self.model.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                flat = nn.Parameter(param.detach().reshape(-1), param.requires_grad)
                setattr(module, name, flat)
        super().setup(trainer)


class _Tiny(OptimizedModule):
    def __init__(self) -> None:
        super().__init__(batch_size_per_device=4)
        self.linear = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        raise AssertionError("not reached: limit_train_batches=0")


def _decay_after_fit(
    module: pl.LightningModule, optimised: nn.Module
) -> dict[str, float]:
    """Weight decay by parameter name (in ``optimised``) of the fitted optimiser."""
    trainer = pl.Trainer(
        strategy=_Flattening(device=torch.device("cpu")),
        max_epochs=1,
        limit_train_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = DataLoader(TensorDataset(torch.zeros(4, 3, 32, 32), torch.zeros(4).long()))
    trainer.fit(module, data)
    names = {id(p): n for n, p in optimised.named_parameters()}
    assert all(p.ndim == 1 for p in module.parameters())  # the strategy flattened
    return {
        names[id(p)]: group["weight_decay"]
        for group in trainer.optimizers[0].param_groups
        for p in group["params"]
    }


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pretrain_module__weight_decay_follows_the_dims_before_the_strategy() -> None:
    module = _Tiny()
    decay = _decay_after_fit(module, module)
    assert decay == {
        "linear.weight": 0.05,
        "linear.bias": 0.0,
        "norm.weight": 0.0,
        "norm.bias": 0.0,
    }


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_finetune_module__weight_decay_follows_the_dims_before_the_strategy(
    tiny_timm_model: Any,
) -> None:
    recipe = FinetuneRecipe(mixup_alpha=0.0, cutmix_alpha=0.0)
    module = FinetuneModule(timm_classifier(tiny_timm_model("vit"), 4), 4, recipe)
    exempt = no_weight_decay_names(module.model, True)  # pos_embed, cls_token, ...
    decay = _decay_after_fit(module, module.model)
    matrices = {n for n, ndim in module.parameter_dims.items() if ndim > 1}
    assert {"head.weight", "blocks.0.attn.qkv.weight"} <= matrices
    assert decay.keys() == module.parameter_dims.keys()
    for name, value in decay.items():
        expected = 0.05 if name in matrices and name not in exempt else 0.0
        assert value == expected, name


# Each rank builds the same tiny SimMIM method, takes the callback's fixed batch and
# writes the PNG of the unwrapped method (rank 0: plain.png), then wraps the method in
# FSDP and saves through the callback, as Lightning's FSDP strategy would hold it.
_RECONSTRUCTION_SCRIPT = """
import json, sys
from pathlib import Path
from types import SimpleNamespace
import torch, torch.distributed as dist
from PIL import Image
from torch.distributed.fsdp import FullyShardedDataParallel
from lightly_simmim import registry
from lightly_simmim.callbacks import ReconstructionImages
from lightly_simmim.config import from_dict

folder, name, kwargs = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
dist.init_process_group("gloo")
torch.manual_seed(0)
cls = registry.get("methods", "simmim")
settings = from_dict(cls.Settings, {"mask_patch_size": 16}, "method.")
method = cls(cls.build_encoder(name, kwargs), settings, input_size=32, in_chans=1,
             batch_size_per_device=2, mean=[0.5], std=[0.5], num_classes=None)
images = [(Image.new("L", (32, 32), color=40 * i), 0) for i in range(4)]
callback = ReconstructionImages(images, folder, 0, [0.5], [0.5], num_images=4)
callback.setup(None, method, "fit")
rank0 = dist.get_rank() == 0
plain = SimpleNamespace(strategy=SimpleNamespace(model=method), is_global_zero=rank0)
callback.save(plain, method, "plain.png")
root = FullyShardedDataParallel(method, use_orig_params=True,
                                device_id=torch.device("cpu"))
assert all(p.ndim <= 1 for p in method.parameters())  # sharded
sharded = SimpleNamespace(strategy=SimpleNamespace(model=root), is_global_zero=rank0)
callback.save(sharded, method, "sharded.png")
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_reconstruction_images__fsdp_sharded_method_draws_the_same_png(
    tmp_path: Path, tiny_timm_kwargs: Any
) -> None:
    name, kwargs = tiny_timm_kwargs("vit", img_size=32, in_chans=1)
    args = [str(tmp_path), name, json.dumps(kwargs)]
    _run_script(tmp_path, _RECONSTRUCTION_SCRIPT, *args)
    plain, sharded = tmp_path / "plain.png", tmp_path / "sharded.png"
    assert plain.stat().st_size > 0
    assert sharded.read_bytes() == plain.read_bytes()


# `lightly-simmim` with Lightning's FSDP strategy on CPU processes (gloo). Lightning
# refuses its own FSDPStrategy off GPUs (a subclass passes its check) and hands torch
# device_id=None, which torch's FSDP refuses on a CPU: the subclass wraps the module
# on the CPU itself, and Lightning keeps an already-wrapped module. Lightning starts
# rank 1 by running this same script again.
_CPU_FSDP_CLI = """
import sys
import torch
from pytorch_lightning.strategies import FSDPStrategy
from torch.distributed.fsdp import FullyShardedDataParallel
import lightly_simmim.trainer
from lightly_simmim.cli import main

class CpuFSDP(FSDPStrategy):
    def _setup_model(self, model):
        wrapped = FullyShardedDataParallel(
            model, mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            device_id=torch.device("cpu"), **self.kwargs)
        return super()._setup_model(wrapped)

package_strategy = lightly_simmim.trainer.lightning_strategy

def cpu_fsdp(name, precision=None):
    strategy = package_strategy(name, precision)
    if name != "fsdp":
        return strategy
    mixed = strategy.mixed_precision if isinstance(strategy, FSDPStrategy) else None
    return CpuFSDP(mixed_precision=mixed)

lightly_simmim.trainer.lightning_strategy = cpu_fsdp
sys.exit(main(sys.argv[1:]))
"""


_FSDP_CPU = ["trainer.strategy=fsdp", "trainer.devices=2", "trainer.accelerator=cpu"]


def _cpu_fsdp_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``lightly-simmim ARGS`` under the CPU FSDP strategy (Lightning starts rank 1)."""
    return _run_script(tmp_path, _CPU_FSDP_CLI, *args, launcher=(), timeout=600)


@pytest.mark.slow
def test_pretrain_and_finetune__fsdp_on_two_cpu_processes(
    tmp_path: Path, pretrain_args: Any
) -> None:
    done = _cpu_fsdp_cli(tmp_path, *pretrain_args(*_FSDP_CPU))
    assert "global batch 32 = 16 per device x 2 device(s)" in done.stdout
    assert "kNN top-1:" in done.stdout  # of the complete checkpoint, reloaded
    run = tmp_path / "runs" / "simmim"
    assert (run / "reconstructions" / "final.png").stat().st_size > 0
    # The optimiser trained the weight matrices with weight decay (default 0.05):
    # with the sharded shapes they would all sit in the group without it.
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    groups = state["optimizer_states"][0]["param_groups"]
    decayed = [g for g in groups if g["weight_decay"] > 0]
    assert decayed and sum(len(g["params"]) for g in decayed) >= 4
    # The fine-tune of the run under FSDP too (its own optimiser, clipping, metrics).
    _cpu_fsdp_cli(
        tmp_path,
        "evaluate",
        str(run),
        "--protocol=finetune",
        "--epochs=1",
        "--batch-size=8",
        "--set",
        "data.limit_train=64",
        "data.limit_eval=32",
        *_FSDP_CPU,
    )
    result = json.loads((run / "eval" / "finetune.json").read_text())
    assert result["settings"]["world_size"] == 2
    assert 0.0 <= result["top1"] <= 100.0
