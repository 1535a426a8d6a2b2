"""Tests for lightly_simmim.data.wrappers: TransformedDataset."""

from __future__ import annotations

import numpy as np

from lightly_simmim.data import TransformedDataset, build_dataset


def test_transformed_dataset__applies_its_transform_to_the_image_only() -> None:
    base = build_dataset("fashion-mnist-embedded", train=False)
    wrapped = TransformedDataset(base, lambda image: np.asarray(image).sum())
    assert len(wrapped) == len(base) == 2_000
    image, label = base[7]
    value, wrapped_label = wrapped[7]
    assert value == int(np.asarray(image, dtype=np.int64).sum())
    assert wrapped_label == label and isinstance(wrapped_label, int)


def test_transformed_dataset__none_returns_the_image_unchanged() -> None:
    base = build_dataset("fashion-mnist-embedded", train=False)
    image, label = TransformedDataset(base, None)[3]
    assert np.array_equal(np.asarray(image), np.asarray(base[3][0]))
    assert label == base[3][1]
