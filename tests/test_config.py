from pathlib import Path

import pytest
import yaml

from lightly_simmim.config import (
    Config,
    ConfigError,
    apply_overrides,
    dump_config,
    load_config,
    to_dict,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_load_config__defaults_without_file() -> None:
    config = load_config()
    assert config == Config()
    assert config.method.name == "simmim"


def test_load_config__yaml_then_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "method:\n  name: mae\n  mask_ratio: 0.75\n"
        "optim:\n  base_lr: 1.0e-4\n  betas: [0.9, 0.95]\n"
        "trainer:\n  precision: bf16-mixed\n",
    )
    config = load_config(path, ["optim.base_lr=2e-4", "method.mask_ratio=0.5"])
    assert config.method.name == "mae"
    assert config.method.options == {"mask_ratio": 0.5}
    assert config.optim.base_lr == 2e-4  # command line beats YAML
    assert config.optim.betas == [0.9, 0.95]
    assert config.trainer.precision == "bf16-mixed"
    assert config.optim.weight_decay == 0.05  # typed default kept


def test_load_config__misspelt_key_names_nearest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"optim\.base_lrr.*Did you mean 'base_lr'"):
        load_config(None, ["optim.base_lrr=1"])
    path = _write(tmp_path, "trainr:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="Did you mean 'trainer'"):
        load_config(path)


@pytest.mark.parametrize(
    "override, match",
    [
        ("trainer.epochs=three", "trainer.epochs"),
        ("trainer.precision=8", "precision"),
        ("data.batch_size=1.5", "batch_size"),
        ("optim.betas=0.9", "list"),
        ("trainer=3", "mapping"),
    ],
)
def test_load_config__wrong_type_names_key(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_load_config__numbers_coerced() -> None:
    config = load_config(None, ["optim.base_lr=1", "trainer.precision=32"])
    assert isinstance(config.optim.base_lr, float)
    assert config.trainer.precision == "32"


def test_load_config__bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a file nor a shipped config"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "a: [1\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n"))


def test_load_config__a_key_given_twice_is_refused(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys silently; a config may not."""
    text = "method:\n  name: simmim\n  mask_ratio: 0.6\n  mask_ratio: 0.75\n"
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, text))
    assert "found the key 'mask_ratio' twice (first on line 3)" in str(error.value)
    with pytest.raises(ConfigError, match="found the key 'mask_ratio' twice"):
        load_config(None, ["method={mask_ratio: 0.5, mask_ratio: 0.6}"])
    # A merge key may still be overridden, as YAML means it.
    merged = "defaults: &d\n  epochs: 3\ntrainer:\n  <<: *d\n  epochs: 4\n"
    with pytest.raises(ConfigError, match="Unknown config key 'defaults'"):
        load_config(_write(tmp_path, merged))


def test_apply_overrides__needs_equals() -> None:
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        apply_overrides({}, ["optim.base_lr"])


def test_dump_config__round_trips(tmp_path: Path) -> None:
    config = load_config(None, ["method.mask_ratio=0.4", "encoder.kwargs.depth=2"])
    path = dump_config(config, tmp_path / "out" / "config.yaml")
    assert yaml.safe_load(path.read_text())["method"] == {
        "name": "simmim",
        "mask_patch_size": 8,  # the default's, kept under the override
        "mask_ratio": 0.4,
    }
    assert load_config(path) == config
    # The override goes over the default encoder's kwargs (typed defaults < file <
    # command line), not in place of them.
    assert to_dict(config)["encoder"]["kwargs"] == {
        **Config().encoder.kwargs,
        "depth": 2,
    }
    other = load_config(None, ["encoder.name=resnet18"])
    assert other.encoder.kwargs == {}  # the default ViT's kwargs mean nothing there
    assert load_config(None, ["method.name=mae"]).method.options == {}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporaries


def test_shipped_configs__all_load_and_paper_recipes_carry_finetune() -> None:
    from lightly_simmim.config import shipped_configs

    names = shipped_configs()
    assert "fashion_mnist_cpu" in names
    for name in names:
        load_config(name)  # strict: a stale key in a shipped config fails here
    vit = load_config("simmim_vit_base_800ep").finetune
    swin = load_config("simmim_swin_base_192_100ep").finetune
    assert (vit.layer_decay, swin.layer_decay) == (0.65, 0.9)
    assert vit.epochs == swin.epochs == 100 and vit.base_lr == 1.25e-3
    with pytest.raises(ConfigError, match="Did you mean 'layer_decay'"):
        load_config(None, ["finetune.layer_decy=0.7"])


def test_load_config__another_method_on_the_command_line_drops_the_files_options() -> (
    None
):
    # The README's "same loop, another method": the CPU default's SimMIM mask
    # options mean nothing to MAE; only the options given with it stay.
    config = load_config(
        "fashion_mnist_cpu", ["method.name=mae", "method.mask_ratio=0.75"]
    )
    assert config.method.name == "mae"
    assert config.method.options == {"mask_ratio": 0.75}
    same = load_config("fashion_mnist_cpu", ["method.mask_ratio=0.5"])
    assert same.method.options == {"mask_patch_size": 8, "mask_ratio": 0.5}
