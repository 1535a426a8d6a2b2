"""The fine-tune's transforms: timm's augmentation, crop_pct evaluation, grayscale."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from lightly_simmim.evaluation import FinetuneRecipe, classification_transforms
from lightly_simmim.evaluation._rng import seed_all

NO_NORM = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def _rgb(size: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
    return Image.fromarray(pixels)


def _gray(size: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), np.uint8)
    return Image.fromarray(pixels)


def _steps(transform: Any) -> list[Any]:
    """Every leaf step of nested ``Compose`` transforms, in order."""
    inner = getattr(transform, "transforms", None)
    if inner is None:
        return [transform]
    return [step for part in inner for step in _steps(part)]


def test_classification_transforms__eval_crops_the_centre_at_crop_pct() -> None:
    # 48 / 0.75 = 64: a 64 px image is not resized, and the crop keeps its centre
    # 48 px, cutting 8 px from every side.
    image = _rgb(64)
    recipe = FinetuneRecipe(train_crop="resized", crop_pct=0.75)
    _, evaluate = classification_transforms(48, 3, NO_NORM, recipe)
    out = evaluate(image)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1) / 255  # (3, 64, 64)
    assert out.shape == (3, 48, 48)
    torch.testing.assert_close(out, pixels[:, 8:56, 8:56])


def test_classification_transforms__eval_cuts_the_border_crop_pct_leaves_out() -> None:
    # At the default crop_pct 0.875 (224 / 256) a 40 px model sees the centre 40 px
    # of the image resized to 45 px: a 45 px image with a white frame of 2 px keeps
    # none of it; a plain resize (crop_pct 1) keeps the frame.
    pixels = np.full((45, 45), 255, np.uint8)
    pixels[2:43, 2:43] = 0
    image = Image.fromarray(pixels).convert("RGB")
    cropped = classification_transforms(40, 3, NO_NORM, FinetuneRecipe())[1](image)
    whole = classification_transforms(40, 3, NO_NORM, FinetuneRecipe(crop_pct=1.0))[1]
    assert cropped.shape == (3, 40, 40)
    assert float(cropped.max()) == 0.0  # only the black square
    assert float(whole(image)[:, 0].mean()) > 0.5  # the frame's top row


def test_classification_transforms__small_images_pad_crop_and_resize_only() -> None:
    # 28 px images for a 32 px model: the official branch for <= 32 px trains on a
    # padded random crop and evaluates on the image resized, without a crop.
    image = _gray(28)
    recipe = FinetuneRecipe(auto_augment=None, random_erase_prob=0.0)
    train, evaluate = classification_transforms(
        32, 1, {"mean": [0.5], "std": [0.25]}, recipe
    )
    names = [type(step).__name__ for step in _steps(train)]
    assert "RandomCrop" in names and "RandomResizedCropAndInterpolation" not in names
    crop = next(s for s in _steps(train) if type(s).__name__ == "RandomCrop")
    assert list(crop.padding) == [4, 4, 4, 4]
    expected = np.array(image.resize((32, 32), Image.Resampling.BICUBIC)) / 255
    out = evaluate(image)
    assert out.shape == (1, 32, 32)
    torch.testing.assert_close(
        out[0] * 0.25 + 0.5, torch.from_numpy(expected).float(), atol=2 / 255, rtol=0
    )
    assert train(image).shape == (1, 32, 32)


def test_classification_transforms__grayscale_is_rgb_augmentation_first_channel() -> (
    None
):
    image = _gray(32, seed=1)
    recipe = FinetuneRecipe(random_erase_prob=0.0)  # RandAugment on, 2 ops each
    gray = {"mean": [0.3], "std": [0.4]}
    rgb = {"mean": [0.3] * 3, "std": [0.4] * 3}
    train_gray, _ = classification_transforms(32, 1, gray, recipe)
    train_rgb, _ = classification_transforms(32, 3, rgb, recipe)
    plain, _ = classification_transforms(
        32, 1, gray, FinetuneRecipe(auto_augment=None, random_erase_prob=0.0)
    )
    changed = 0
    for seed in range(20):
        seed_all(seed)
        one = train_gray(image)
        seed_all(seed)
        three = train_rgb(image.convert("RGB"))
        seed_all(seed)
        changed += not torch.equal(one, plain(image))
        assert one.shape == (1, 32, 32) and three.shape == (3, 32, 32)
        # RandAugment treats three equal channels alike: nothing is lost by
        # keeping one, and the one kept is the RGB augmentation's.
        torch.testing.assert_close(three[1:], three[:1].expand(2, -1, -1))
        torch.testing.assert_close(one, three[:1])
    assert changed >= 15  # the operations did run


def test_classification_transforms__randaugment_at_magnitude_10_keeps_working() -> None:
    # timm's PosterizeIncreasing asks for 0 bits at magnitude 10, which Pillow 11+
    # refuses; the transform gives the black image older Pillow gave.
    recipe = FinetuneRecipe(auto_augment="rand-m10-n3-inc1", random_erase_prob=0.0)
    train, _ = classification_transforms(32, 3, NO_NORM, recipe)
    ops = next(s for s in _steps(train) if type(s).__name__ == "RandAugment").ops
    posterize = next(op for op in ops if op.name == "PosterizeIncreasing")
    posterize.prob = 1.0
    assert np.array(posterize(_rgb(8))).max() == 0
    seed_all(0)
    for index in range(60):  # ~12 posterize draws at magnitude 10
        assert train(_rgb(32, seed=index)).shape == (3, 32, 32)


def test_classification_transforms__tensor_and_pil_inputs_give_the_same_image() -> None:
    image = _rgb(40)
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # uint8 (3, 40, 40)
    _, evaluate = classification_transforms(32, 3, NO_NORM, FinetuneRecipe())
    torch.testing.assert_close(evaluate(tensor), evaluate(image))
    torch.testing.assert_close(evaluate(tensor.float() / 255), evaluate(image))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_chans": 2}, "in_chans must be 1 or 3"),
        ({"normalize": {"mean": [0.5], "std": [0.5]}}, "one value per channel"),
    ],
)
def test_classification_transforms__invalid_arguments_raise(
    kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        classification_transforms(**{"input_size": 32, **kwargs})
