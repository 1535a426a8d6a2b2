import math

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from lightly_simmim.masking import SimMIMMaskGenerator, process_seed


def _paper_count(height: int, width: int, mask_patch: int, ratio: float) -> int:
    # Written out from the paper: cells on the coarse grid, ceil of ratio times cells.
    cells = (height // mask_patch) * (width // mask_patch)
    return math.ceil(cells * ratio)


@pytest.mark.parametrize(
    "size, mask_patch, model_patch, ratio",
    [(224, 32, 16, 0.6), (192, 32, 4, 0.6), (32, 8, 4, 0.5), ((32, 64), 16, 8, 0.3)],
)
def test_generator__exact_count_and_ratio(size, mask_patch, model_patch, ratio) -> None:
    gen = SimMIMMaskGenerator(size, mask_patch, model_patch, ratio)
    h, w = (size, size) if isinstance(size, int) else size
    mask = gen(batch_size=16)
    assert mask.dtype == torch.bool
    assert mask.shape == (16, h // model_patch, w // model_patch)
    per_cell_tokens = (mask_patch // model_patch) ** 2
    expected = _paper_count(h, w, mask_patch, ratio) * per_cell_tokens
    assert mask.flatten(1).sum(1).tolist() == [expected] * 16
    expected_ratio = _paper_count(h, w, mask_patch, ratio) / (
        (h // mask_patch) * (w // mask_patch)
    )
    assert abs(mask.float().mean().item() - expected_ratio) < 1e-6


def test_generator__block_structure() -> None:
    gen = SimMIMMaskGenerator(64, 16, 4, 0.5)
    mask = gen(batch_size=8)  # (8, 16, 16), cells of 4x4 tokens
    cells = mask.view(8, 4, 4, 4, 4)  # (B, gh, s, gw, s)
    first = cells[:, :, :1, :, :1]
    assert torch.equal(cells, first.expand_as(cells))


def test_generator__uniform_over_cells() -> None:
    gen = SimMIMMaskGenerator(64, 16, 16, 0.25)  # 16 cells, 4 masked
    mask = gen(batch_size=20000, generator=torch.Generator().manual_seed(0))
    freq = mask.float().mean(0).flatten()
    # Every cell is masked with probability 4/16; binomial std ~0.003 here.
    assert torch.allclose(freq, torch.full_like(freq, 0.25), atol=0.015)


def test_generator__ratio_edges() -> None:
    assert not SimMIMMaskGenerator(32, 8, 4, 0.0)(2).any()
    assert SimMIMMaskGenerator(32, 8, 4, 1.0)(2).all()


def test_generator__generator_reproducible() -> None:
    gen = SimMIMMaskGenerator(64, 16, 4, 0.6)
    a = gen(4, generator=torch.Generator().manual_seed(3))
    b = gen(4, generator=torch.Generator().manual_seed(3))
    c = gen(4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_generator__seed_reproducible_across_instances() -> None:
    a = SimMIMMaskGenerator(64, 16, 4, 0.6, seed=1)
    b = SimMIMMaskGenerator(64, 16, 4, 0.6, seed=1)
    assert torch.equal(a(4), b(4))
    assert torch.equal(a(4), b(4))  # the stream continues identically
    assert not torch.equal(a(4), SimMIMMaskGenerator(64, 16, 4, 0.6, seed=2)(4))


def test_generator__device() -> None:
    gen = SimMIMMaskGenerator(32, 8, 4, 0.6, seed=0)
    assert gen(2, device="cpu").device.type == "cpu"
    # Meta tensors have no generator: the global-RNG path still works there.
    assert SimMIMMaskGenerator(32, 8, 4, 0.6)(2, device="meta").device.type == "meta"
    if torch.cuda.is_available():
        assert gen(2, device="cuda").device.type == "cuda"


def test_generator__distinct_across_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    masks = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        masks.append(SimMIMMaskGenerator(64, 8, 4, 0.6, seed=7)(8))
    assert not torch.equal(masks[0], masks[1])
    assert process_seed(7, rank=0, worker=0) != process_seed(7, rank=1, worker=0)
    assert process_seed(7, rank=0, worker=0) != process_seed(7, rank=0, worker=1)
    assert process_seed(7, rank=1, worker=2) == process_seed(7, rank=1, worker=2)


class _MaskDataset(Dataset[torch.Tensor]):
    def __init__(self, gen: SimMIMMaskGenerator) -> None:
        self.gen = gen

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.gen(1)[0]


@pytest.mark.parametrize("seed", [None, 5])
def test_generator__distinct_across_workers(seed) -> None:
    gen = SimMIMMaskGenerator(64, 8, 4, 0.6, seed=seed)
    loader = DataLoader(_MaskDataset(gen), batch_size=4, num_workers=2)
    first, second = list(loader)  # batch 0 from worker 0, batch 1 from worker 1
    # Worker i draws its own stream: the k-th masks of the two workers differ.
    assert not torch.equal(first, second)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(input_size=100, mask_patch_size=32, model_patch_size=4), ["100", "32"]),
        (dict(input_size=64, mask_patch_size=32, model_patch_size=12), ["32", "12"]),
        (
            dict(input_size=64, mask_patch_size=32, model_patch_size=4, mask_ratio=1.5),
            ["1.5"],
        ),
        (dict(input_size=(64, 48), mask_patch_size=32, model_patch_size=4), ["48"]),
        (dict(input_size=64, mask_patch_size=0, model_patch_size=4), ["0"]),
    ],
)
def test_generator__impossible_settings_name_values(kwargs, words) -> None:
    with pytest.raises(ValueError) as info:
        SimMIMMaskGenerator(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_generator__reseed_starts_new_deterministic_streams() -> None:
    gen = SimMIMMaskGenerator(64, 8, 4, 0.6, seed=1)
    first = gen(4)
    gen.reseed(2)
    other = gen(4)
    assert torch.equal(other, SimMIMMaskGenerator(64, 8, 4, 0.6, seed=2)(4))
    gen.reseed(1)
    assert torch.equal(gen(4), first)
    assert not torch.equal(first, other)
