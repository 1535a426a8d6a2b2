"""What ``lightly-simmim throughput`` measures: config names, YAML files, specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightly_simmim.config import ConfigError
from lightly_simmim.throughput.targets import (
    METHOD_ROWS,
    parse_encoder_spec,
    resolve_target,
)

TINY_SPEC = "vit_tiny_patch16_224:img_size=32,patch_size=4,embed_dim=32,depth=1"


def test_parse_encoder_spec__reads_values_as_yaml_and_keeps_brackets() -> None:
    name, kwargs = parse_encoder_spec(
        "vit_small_patch16_224:img_size=[96, 96],depth=6,qkv_bias=false,"
        "mlp_ratio=2.5,global_pool=avg"
    )
    assert name == "vit_small_patch16_224"
    assert kwargs == {
        "img_size": [96, 96],
        "depth": 6,
        "qkv_bias": False,
        "mlp_ratio": 2.5,
        "global_pool": "avg",
    }


def test_parse_encoder_spec__name_alone_has_no_kwargs() -> None:
    assert parse_encoder_spec("vit_small_patch16_224") == ("vit_small_patch16_224", {})


def test_parse_encoder_spec__pair_without_equals_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'depth6' is not KEY=VALUE"):
        parse_encoder_spec("vit_small_patch16_224:depth6")


def test_resolve_target__unknown_name_names_shipped_configs_and_spec() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_target("no_such_model_or_config")
    message = str(caught.value)
    assert "fashion_mnist_cpu" in message and "encoder spec" in message


def test_resolve_target__spec_builds_its_encoder_at_methods_defaults() -> None:
    target = resolve_target(TINY_SPEC, batch_size=8)
    assert target.kind == "spec"
    assert target.config.encoder.kwargs["embed_dim"] == 32
    assert target.config.data.input_size == 32
    assert target.config.data.in_chans == 3
    assert target.config.data.mean is None  # ImageNet statistics for 3 channels
    assert set(target.methods) == set(METHOD_ROWS)
    for name in METHOD_ROWS:
        config = target.method_config(name)
        assert config.method.name == name
        assert config.method.options == {}  # the method's paper defaults
        assert config.data.batch_size == 8
        assert config.encoder == target.config.encoder


def test_resolve_target__spec_image_size_sets_img_size_and_input_size() -> None:
    target = resolve_target(TINY_SPEC, image_size=64)
    for config in (target.config, *target.methods.values()):
        assert config.data.input_size == 64
        assert config.encoder.kwargs["img_size"] == 64


def test_resolve_target__image_size_leaves_img_size_to_models_of_any_size() -> None:
    # A ViT is built for one size (its position table), a ConvNeXt for any.
    vit = resolve_target("vit_tiny_patch16_224", image_size=64).config
    assert vit.encoder.kwargs == {"img_size": 64}
    convnext = resolve_target("test_convnext", image_size=64).config
    assert convnext.encoder.kwargs == {}
    assert convnext.data.input_size == 64
    # Without --image-size: the model's own size.
    assert resolve_target("test_convnext").config.data.input_size == 160


def test_resolve_target__spec_overrides_address_its_run_config() -> None:
    target = resolve_target(TINY_SPEC, ["method.mask_patch_size=8", "seed=3"])
    assert target.method_config("simmim").method.options == {"mask_patch_size": 8}
    assert target.method_config("mae").seed == 3


def test_resolve_target__shipped_config_keeps_its_method_and_sizes() -> None:
    target = resolve_target("fashion_mnist_cpu", ["data.batch_size=16"])
    assert target.kind == "config"
    simmim = target.method_config("simmim")
    assert simmim == target.config
    assert simmim.method.options["mask_patch_size"] == 8
    assert simmim.data.batch_size == 16
    # Other methods: the same encoder and data, their own default settings.
    assert target.method_config("byol").method.options == {}
    assert target.method_config("byol").encoder == simmim.encoder


def test_resolve_target__benchmark_file_gives_each_method_its_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bench.yaml"
    kwargs = {"img_size": 32, "patch_size": 4, "embed_dim": 32, "depth": 1}
    encoder = {"name": "vit_tiny_patch16_224", "kwargs": {**kwargs, "in_chans": 1}}
    benchmark = {
        "base": {"encoder": encoder, "data": {"batch_size": 8}},
        "methods": {
            "mine": {"method": {"name": "simmim", "mask_patch_size": 8}},
            "mae": {"method": {"decoder_dim": 16, "decoder_depth": 1}},
        },
    }
    path.write_text(yaml.safe_dump(benchmark))
    target = resolve_target(str(path), ["base.data.batch_size=4"], image_size=32)
    assert target.kind == "benchmark"
    assert target.config.method.options == {"mask_patch_size": 8}
    mae = target.method_config("mae").method.options
    assert mae == {"decoder_dim": 16, "decoder_depth": 1}
    assert target.method_config("byol").method.options == {}  # no byol row
    assert {c.data.batch_size for c in target.methods.values()} == {4}
