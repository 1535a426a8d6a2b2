"""The benchmark config: strict keys, methods resolved before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightly_simmim.benchmark import (
    BenchmarkConfig,
    load_benchmark_config,
    method_configs,
    seeded_runs,
)
from lightly_simmim.config import ConfigError
from lightly_simmim.registry import UnknownComponentError

CONFIGS = Path(__file__).resolve().parents[2] / "benchmarks" / "configs"
SMOKE = CONFIGS / "fashion_mnist_smoke.yaml"


def _write(tmp_path: Path, values: dict[str, object]) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_benchmark_configs__load_and_resolve(path: Path) -> None:
    config = load_benchmark_config(path)
    assert config.name == path.stem
    configs = method_configs(config)
    assert {"simmim", "mae", "byol"} <= set(configs)
    for label, run in configs.items():
        assert run.name == label
        assert Path(run.output_dir) == Path(config.output_dir) / "runs"
        assert run.method.name == label
    # Every method of a benchmark shares the encoder, data and budget.
    runs = list(configs.values())
    assert len({r.encoder.name for r in runs}) == 1
    assert len({r.trainer.epochs for r in runs}) == 1
    assert len({r.data.dataset for r in runs}) == 1


def test_method_configs__merge_rows_over_base() -> None:
    config = BenchmarkConfig(
        base={"data": {"batch_size": 32, "limit_train": 100}, "trainer": {"epochs": 3}},
        methods={
            "simmim": {"method": {"mask_ratio": 0.5}, "data": {"batch_size": 16}},
            "byol": None,
            "mine": {"method": {"name": "mae", "mask_ratio": 0.9}},
        },
        output_dir="out",
    )
    configs = method_configs(config)
    simmim = configs["simmim"]
    assert simmim.method.name == "simmim"
    assert simmim.method.options == {"mask_ratio": 0.5}
    assert simmim.data.batch_size == 16 and simmim.data.limit_train == 100
    assert simmim.trainer.epochs == 3
    assert configs["byol"].data.batch_size == 32
    assert configs["mine"].method.name == "mae"
    assert configs["mine"].output_dir == str(Path("out") / "runs")
    # The base is not changed by merging a row into it.
    assert config.base["data"] == {"batch_size": 32, "limit_train": 100}


def test_load_benchmark_config__overrides_address_the_benchmark_file() -> None:
    config = load_benchmark_config(
        SMOKE, ["base.data.limit_train=123", "methods.mae.method.mask_ratio=0.5"]
    )
    configs = method_configs(config)
    assert configs["simmim"].data.limit_train == 123
    assert configs["mae"].method.options["mask_ratio"] == 0.5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"methds": {"simmim": {}}}, "Did you mean 'methods'"),
        ({"methods": {}}, "lists no method"),
        ({"methods": {"simmim": {}}, "protocols": ["knn", "lineer"]}, "lineer"),
        ({"methods": {"simmim": {"optim": {"base_lrr": 1}}}}, "'base_lr'"),
        ({"methods": {"simmim": {"method": {"mask_ratioo": 1}}}}, "mask_ratio"),
        ({"methods": {"simmim": 3}}, "must be a mapping"),
        ({"methods": {"a/b": {"method": "simmim"}}}, "plain name"),
        ({"methods": {"simmim": {}}, "base": {"name": "x"}}, "set by the benchmark"),
        (
            {"methods": {"simmim": {}}, "baselines": {"single_token": "mae"}},
            "not a row of 'methods'",
        ),
        ({"methods": {"simmim": {}}, "linear": {"pooling": "max"}}, "pooling"),
        ({"methods": {"simmim": {}}, "seeds": []}, "non-empty list"),
        ({"methods": {"simmim": {}}, "protocols": []}, "protocols is empty"),
        ({"methods": {"simmim": {}}, "seeds": [0, 0]}, "distinct"),
        ({"methods": {"simmim": {}}, "seeds": [-1]}, ">= 0"),
        ({"methods": {"simmim": {"seeds": [1, 1]}}}, r"methods\.simmim\.seeds"),
        ({"methods": {"simmim": {"seeds": "0"}}}, r"methods\.simmim\.seeds"),
    ],
)
def test_load_benchmark_config__bad_input_names_the_key(
    tmp_path: Path, values: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_benchmark_config(_write(tmp_path, values))


def test_load_benchmark_config__unknown_method_lists_known(tmp_path: Path) -> None:
    path = _write(tmp_path, {"methods": {"simclr": {}}})
    with pytest.raises(UnknownComponentError, match="simmim"):
        load_benchmark_config(path)


def test_load_benchmark_config__missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_benchmark_config(tmp_path / "nope.yaml")


def test_seeded_runs__the_benchmarks_seeds_or_the_rows_own(tmp_path: Path) -> None:
    values = {
        "methods": {"simmim": {}, "byol": {"seeds": [7]}},
        "seeds": [0, 3],
        "output_dir": str(tmp_path),
    }
    benchmark = load_benchmark_config(_write(tmp_path, values))
    configs = method_configs(benchmark)
    simmim = seeded_runs(benchmark, "simmim", configs["simmim"])
    assert [(r.name, r.seed, r.config.seed) for r in simmim] == [
        ("simmim-seed0", 0, 0),
        ("simmim-seed3", 3, 3),
    ]
    assert [r.config.name for r in simmim] == ["simmim-seed0", "simmim-seed3"]
    byol = seeded_runs(benchmark, "byol", configs["byol"])
    assert [(r.name, r.config.seed) for r in byol] == [("byol-seed7", 7)]
    # No seeds: one run named by its label, at the run config's own seed.
    benchmark.seeds = None
    (single,) = seeded_runs(benchmark, "simmim", configs["simmim"])
    assert (single.name, single.seed, single.config) == (
        "simmim",
        None,
        configs["simmim"],
    )
