import pytest
import torch
import torchvision
from lightly.data import LightlyDataset, MultiViewCollate
from lightly.transforms import MAETransform
from PIL import Image
from torch.utils.data import DataLoader

from lightly_simmim.masking import SimMIMMaskGenerator
from lightly_simmim.transforms import IMAGENET_NORMALIZE, SimMIMTransform


def _pil(mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> Image.Image:
    data = torch.randint(0, 256, (size[1], size[0], 3), dtype=torch.uint8).numpy()
    return Image.fromarray(data).convert(mode)


def test_transform__pil_gives_one_normalised_view() -> None:
    views = SimMIMTransform(input_size=32)(_pil())
    assert isinstance(views, list) and len(views) == 1
    assert views[0].shape == (3, 32, 32) and views[0].dtype == torch.float32
    # Normalised with ImageNet statistics: values leave [0, 1].
    assert views[0].min() < 0


def test_transform__paper_defaults() -> None:
    t = SimMIMTransform()
    crop = t.transform.transforms[0]
    assert isinstance(crop, torchvision.transforms.v2.RandomResizedCrop)
    assert crop.scale == (0.67, 1.0)
    assert crop.ratio == pytest.approx((3 / 4, 4 / 3))
    assert t.transform.transforms[1].p == 0.5
    assert t.transform.transforms[-1].mean == IMAGENET_NORMALIZE["mean"]


def test_transform__tensor_input_uint8_and_float() -> None:
    t = SimMIMTransform(input_size=(16, 32), normalize=None)
    u8 = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    out = t(u8)[0]
    assert out.shape == (3, 16, 32)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert t(u8.float() / 255)[0].shape == (3, 16, 32)


def test_transform__single_channel() -> None:
    t = SimMIMTransform(
        input_size=16, in_chans=1, normalize={"mean": [0.5], "std": [0.5]}
    )
    assert t(_pil("RGB"))[0].shape == (1, 16, 16)
    assert t(torch.rand(1, 20, 20))[0].shape == (1, 16, 16)
    # Grayscale into an RGB model: channels are repeated.
    rgb = SimMIMTransform(input_size=16)
    assert rgb(_pil("L"))[0].shape == (3, 16, 16)
    assert rgb(torch.rand(1, 20, 20))[0].shape == (3, 16, 16)


def test_transform__mask_from_generator() -> None:
    gen = SimMIMMaskGenerator(32, 16, 4, 0.5)
    view, mask = SimMIMTransform(input_size=32, mask_generator=gen)(_pil())
    assert view.shape == (3, 32, 32)
    assert mask.shape == (8, 8) and mask.dtype == torch.bool
    assert mask.sum() == 2 * 16


def test_transform__composes_with_lightly_dataset_and_collate() -> None:
    base = torchvision.datasets.FakeData(size=6, image_size=(3, 40, 40), num_classes=2)
    gen = SimMIMMaskGenerator(32, 16, 4, 0.5)
    dataset = LightlyDataset.from_torch_dataset(
        base, transform=SimMIMTransform(input_size=32, mask_generator=gen)
    )
    loader = DataLoader(dataset, batch_size=3, collate_fn=MultiViewCollate())
    (views, masks), labels, _ = next(iter(loader))
    assert views.shape == (3, 3, 32, 32) and masks.shape == (3, 8, 8)
    assert labels.shape == (3,)
    # Same contract as lightly's own transforms: swapping in MAE's changes nothing else.
    mae = LightlyDataset.from_torch_dataset(base, transform=MAETransform(input_size=32))
    (mae_views,), _, _ = next(
        iter(DataLoader(mae, batch_size=3, collate_fn=MultiViewCollate()))
    )
    assert mae_views.shape == views.shape


def test_transform__bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="in_chans=1"):
        SimMIMTransform(in_chans=1)  # ImageNet statistics have 3 values
    with pytest.raises(ValueError, match="input_size"):
        SimMIMTransform(input_size=32, mask_generator=SimMIMMaskGenerator(64, 32, 4))
    with pytest.raises(ValueError, match="4 channels"):
        SimMIMTransform(input_size=16)(torch.rand(4, 20, 20))
    with pytest.raises(ValueError, match="min_scale"):
        SimMIMTransform(min_scale=0.0)
