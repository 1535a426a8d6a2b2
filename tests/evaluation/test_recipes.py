"""The fine-tune and linear-probe recipes, and ``override`` (the evaluate options)."""

from __future__ import annotations

import pytest

from lightly_simmim.evaluation import FinetuneRecipe, LinearRecipe, override
from lightly_simmim.settings import SettingError


def test_override__explicit_zero_is_a_value_and_none_is_not_given() -> None:
    recipe = FinetuneRecipe(epochs=10, warmup_epochs=2, drop_path_rate=0.1)
    changed = override(recipe, warmup_epochs=0, drop_path_rate=0.0, base_lr=None)
    assert (changed.warmup_epochs, changed.drop_path_rate) == (0, 0.0)
    assert changed.base_lr == recipe.base_lr  # None: not given
    assert recipe.warmup_epochs == 2  # a new recipe; the given one is unchanged
    assert override(LinearRecipe(), layer=0).layer == 0


def test_override__shorter_schedule_keeps_at_most_half_its_epochs_of_warmup() -> None:
    # The paper's 20 warmup epochs in a 1-epoch fine-tune: half an epoch.
    assert override(FinetuneRecipe(), epochs=1).warmup_epochs == 0.5
    assert override(FinetuneRecipe(), epochs=60).warmup_epochs == 20
    # A warmup given alongside is taken as given.
    assert override(FinetuneRecipe(), epochs=4, warmup_epochs=3).warmup_epochs == 3
    # The linear probe's automatic warmup (None) stays automatic.
    linear = override(LinearRecipe(), epochs=4)
    assert linear.warmup_epochs is None and linear.warmup == 2.0


def test_override__unknown_field_and_out_of_range_value_raise() -> None:
    with pytest.raises(TypeError, match="LinearRecipe has no field 'lr_decay'"):
        override(LinearRecipe(), lr_decay=0.5)
    with pytest.raises(SettingError, match="'epochs' = 0 must be >= 1"):
        override(FinetuneRecipe(), epochs=0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"batch_size": 33}, "'batch_size' = 33 must be even with mixup"),
        (
            {"auto_augment": "randaug-m9"},
            "'auto_augment' = 'randaug-m9' is not a timm policy .unknown policy",
        ),
        # Built by timm to check: these stopped the fine-tune with a traceback ...
        ({"auto_augment": "rand-m9-zz5"}, "Unknown RandAugment config section"),
        ({"auto_augment": "augmix-q3"}, "Unknown AugMix config section"),
        ({"auto_augment": "rand-m9x"}, "invalid literal for int"),
        # ... and timm silently skipped these sections: another policy was trained.
        ({"auto_augment": "rand-m9-bogus"}, "section 'bogus' has no value"),
        ({"auto_augment": "v0-zz"}, "section 'zz' has no value"),
        ({"head_init_scale": "big"}, "'head_init_scale' = 'big' must be 'auto'"),
        ({"mixup_prob": 1.5}, "'mixup_prob' = 1.5 must be in"),
    ],
)
def test_finetune_recipe__impossible_settings_name_the_field(
    change: dict[str, object], match: str
) -> None:
    with pytest.raises(SettingError, match=match):
        FinetuneRecipe(**change)  # type: ignore[arg-type]


def test_finetune_recipe__odd_batches_are_fine_without_mixing() -> None:
    recipe = FinetuneRecipe(batch_size=33, mixup_alpha=0.0, cutmix_alpha=0.0)
    assert not recipe.mixes and recipe.batch_size == 33
    assert FinetuneRecipe().mixes  # the official recipe mixes
