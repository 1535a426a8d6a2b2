"""The benchmark runner: pretrain every method, evaluate every run, tabulate.

:func:`run_benchmark` does, in order, for each row of the table:

1. **Pretrain** the method in a child process (``python -m lightly_simmim.cli
   pretrain``), exactly what a user's ``lightly-simmim pretrain`` runs: one process
   per method, so the peak memory in ``metrics.json`` is that method's own, and a
   ``strategy: ddp`` config launches its ranks as it would on the command line. A
   run whose ``metrics.json`` exists is finished and not trained again; one with a
   checkpoint but no ``metrics.json`` (a killed benchmark) resumes.
2. **Evaluate** it with each protocol in this process through
   :func:`lightly_simmim.evaluate.evaluate_run` (results in ``<run>/eval/``); a
   result written with the same settings is reused, so a rerun after a crash only
   does what is missing. kNN is read from ``metrics.json`` where pretraining
   already computed it.

then the baselines (the untrained encoder fine-tuned from scratch with the same
recipe, kNN on raw pixels) and writes the report (:mod:`.report`) after every row,
so a long benchmark shows its partial table as it goes.

With ``seeds``, every row is one run per seed (``runs/<label>-seed<N>``), in the
order row after row. The single-token ablation is an ordinary row: the named SimMIM
row's config with ``mask_patch_size`` set to the encoder's patch size and
``mask_ratio`` 0.75 (:mod:`.baselines`).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import pytorch_lightning as pl

from lightly_simmim.benchmark.baselines import RawPixels, single_token_config
from lightly_simmim.benchmark.config import (
    BenchmarkConfig,
    SeededRun,
    method_configs,
    seeded_runs,
)
from lightly_simmim.benchmark.report import write_report
from lightly_simmim.build import build_method, dataset_splits
from lightly_simmim.checkpoints import CHECKPOINT_DIR, LAST_CHECKPOINT
from lightly_simmim.config import (
    Config,
    ConfigError,
    dump_config,
    load_config,
    to_dict,
)
from lightly_simmim.data import DatasetNotFoundError
from lightly_simmim.evaluation import write_results
from lightly_simmim.evaluation.protocol import (
    Protocol,
    evaluate_method,
    evaluate_run,
    knn_evaluate,
)
from lightly_simmim.evaluation.results import JsonDict
from lightly_simmim.methods import PretrainMethod

__all__ = ["BenchmarkError", "RawPixels", "run_benchmark", "single_token_config"]

FROM_SCRATCH = "from-scratch"
RAW_PIXELS = "raw-pixels"


class BenchmarkError(ChildProcessError):
    """A step of the benchmark failed; the message says which and how to go on.

    A ``ChildProcessError``: mostly a pretraining child process that failed (the
    CLI exits with status 1 on it, without importing this module first).
    """


def _check_data(label: str, config: Config) -> None:
    """Fails now, with the benchmark's key in the message, if the data are missing."""
    try:
        dataset_splits(config)
    except DatasetNotFoundError as error:
        raise DatasetNotFoundError(
            f"methods.{label}: {error} In a benchmark config the data root is "
            "base.data.root (--set base.data.root=PATH)."
        ) from error


#: Config sections that only the evaluation reads: changing them re-evaluates a run
#: instead of training it again.
EVALUATION_SECTIONS = ("eval", "finetune")


def _same_config(folder: Path, config: Config) -> bool:
    """Whether the run in ``folder`` was pretrained with ``config``'s settings."""
    existing = load_config(folder / "config.yaml")
    existing = replace(existing, name=config.name, output_dir=config.output_dir)
    ours, theirs = to_dict(config), to_dict(existing)
    for section in EVALUATION_SECTIONS:
        ours.pop(section)
        theirs.pop(section)
    return ours == theirs


class _Runner:
    """State of one benchmark run (see :func:`run_benchmark`)."""

    def __init__(self, benchmark: BenchmarkConfig, command: str | None) -> None:
        self.benchmark = benchmark
        self.command = command
        self.output_dir = Path(benchmark.output_dir)
        self.rows: list[JsonDict] = []

    # ------------------------------------------------------------ pretraining

    def pretrain(self, label: str, config: Config) -> JsonDict:
        """Trains ``label`` in a child process unless finished; its metrics."""
        folder = self.output_dir / "runs" / label
        metrics_path = folder / "metrics.json"
        if (folder / "config.yaml").is_file() and not _same_config(folder, config):
            # A usage error (exit 2, as pretrain's refusals), not a failed child.
            raise ConfigError(
                f"{str(folder)!r} was trained with a different config than the "
                f"benchmark now gives {label!r} (outside the evaluation-only "
                f"sections {', '.join(EVALUATION_SECTIONS)}). Delete that folder to "
                "train it again, or set another output_dir for the changed benchmark."
            )
        if metrics_path.is_file():
            print(f"[benchmark] {label}: already pretrained ({folder})", flush=True)
        else:
            last = folder / CHECKPOINT_DIR / LAST_CHECKPOINT
            cli = [sys.executable, "-m", "lightly_simmim.cli", "pretrain"]
            if last.is_file():
                print(f"[benchmark] {label}: resuming {folder}", flush=True)
                args = [*cli, "--resume", str(folder)]
            else:
                path = self.output_dir / "configs" / f"{label}.yaml"
                dump_config(config, path)
                print(f"[benchmark] {label}: pretraining ({path})", flush=True)
                args = [*cli, "--config", str(path)]
            returncode = subprocess.run(args, check=False).returncode
            if returncode != 0 or not metrics_path.is_file():
                raise BenchmarkError(
                    f"Pretraining {label!r} failed (exit status {returncode}); its "
                    "messages are above. Fix the cause and run the same benchmark "
                    f"command again: finished rows are kept and {label!r} resumes "
                    "from its last checkpoint. A fix that changes the row's config "
                    f"(a lower learning rate) needs {str(folder)!r} deleted first: "
                    "it records the config it was trained with."
                )
        metrics: JsonDict = json.loads(metrics_path.read_text())
        return metrics

    # ------------------------------------------------------------- evaluation

    def _settings(self, protocol: Protocol, config: Config) -> JsonDict:
        """What a stored result must have been computed with to be reused."""
        if protocol == "knn":
            return {"k": config.eval.knn_k, "temperature": config.eval.knn_temperature}
        linear = dataclasses.asdict(self.benchmark.linear)
        if protocol == "linear":
            return linear
        if protocol == "layers":
            knn = self._settings("knn", config)
            return {**linear, **knn, "seed": config.seed}
        return dataclasses.asdict(config.finetune)

    def _stored(self, path: Path, settings: JsonDict) -> JsonDict | None:
        if not path.is_file():
            return None
        stored: JsonDict = json.loads(path.read_text())
        return stored if stored.get("benchmark_settings") == settings else None

    def evaluate(
        self,
        label: str,
        config: Config,
        protocol: Protocol,
        run: Callable[[], JsonDict],
        folder: Path,
    ) -> JsonDict:
        """The stored result of ``protocol`` if its settings match, else ``run()``."""
        settings = self._settings(protocol, config)
        path = folder / "eval" / f"{protocol}.json"
        stored = self._stored(path, settings)
        if stored is not None:
            print(f"[benchmark] {label}: {protocol} already evaluated", flush=True)
            return stored
        print(f"[benchmark] {label}: evaluating with {protocol}", flush=True)
        started = time.perf_counter()
        result = run()
        result["seconds"] = round(time.perf_counter() - started, 1)
        result["benchmark_settings"] = settings
        write_results(result, folder / "eval", protocol)
        print(
            f"[benchmark] {label}: {protocol} top-1 {result['top1']:.2f}% "
            f"(top-5 {result['top5']:.2f}%)",
            flush=True,
        )
        return result

    def evaluate_pretrained(
        self, label: str, config: Config, metrics: JsonDict
    ) -> dict[str, JsonDict]:
        folder = self.output_dir / "runs" / label
        results: dict[str, JsonDict] = {}
        for protocol in self.benchmark.protocols:
            knn = metrics.get("knn") or {}
            stored = {"k": knn.get("k"), "temperature": knn.get("temperature")}
            if protocol == "knn" and stored == self._settings("knn", config):
                results[protocol] = knn  # computed at the end of pretraining
                continue

            def run(protocol: Protocol = protocol) -> JsonDict:
                linear = self.benchmark.linear
                return evaluate_run(folder, protocol, config=config, linear=linear)[0]

            results[protocol] = self.evaluate(label, config, protocol, run, folder)
        return results

    # -------------------------------------------------------------- baselines

    def from_scratch(self, run: SeededRun) -> dict[str, JsonDict]:
        """The untrained encoder: kNN / linear on its features, fine-tuned."""
        config = run.config
        folder = self.output_dir / "baselines" / run.name
        # Drop path needs its layers built in (they have no parameters, so the
        # seeded initial weights are the same with or without them).
        drop_path = {"drop_path_rate": config.finetune.drop_path_rate}
        results: dict[str, JsonDict] = {}
        for protocol in self.benchmark.protocols:

            def evaluate(protocol: Protocol = protocol) -> JsonDict:
                pl.seed_everything(config.seed, workers=True, verbose=False)
                method = build_method(
                    config, with_classes=False, encoder_kwargs=drop_path
                ).eval()
                return evaluate_method(method, config, protocol, self.benchmark.linear)

            results[protocol] = self.evaluate(
                run.name, config, protocol, evaluate, folder
            )
        return results

    def raw_pixels(self, config: Config) -> dict[str, JsonDict]:
        """kNN on the evaluation-transformed pixels."""
        folder = self.output_dir / "baselines" / RAW_PIXELS
        transform = build_method(config, with_classes=False).eval_transform()

        def run() -> JsonDict:
            return knn_evaluate(RawPixels(transform), config)

        return {"knn": self.evaluate(RAW_PIXELS, config, "knn", run, folder)}

    # ----------------------------------------------------------------- report

    def add_row(
        self,
        run: SeededRun,
        kind: str,
        results: dict[str, JsonDict],
        metrics: JsonDict | None,
        folder: Path,
        encoder: str | None = "config",
    ) -> None:
        """Adds a run to the table and rewrites the report (``encoder=None``: no
        encoder)."""
        config = run.config
        pretrained = metrics or {}
        row: JsonDict = {
            "label": run.label,
            "seed": run.seed if run.seed is not None else config.seed,
            "kind": kind,
            "method": config.method.name if metrics is not None else None,
            "encoder": config.encoder.name if encoder == "config" else encoder,
            "pretrain_epochs": metrics["epoch"] if metrics is not None else 0,
            "batch_size": pretrained.get("global_batch_size"),
            "pretrain_seconds": pretrained.get("train_seconds"),
            "peak_memory_mb": pretrained.get("peak_memory_mb"),
            "peak_memory_kind": pretrained.get("peak_memory_kind"),
            "resumed": pretrained.get("resumed"),
            "folder": str(folder),
        }
        for protocol in ("knn", "linear", "finetune"):
            result = results.get(protocol)
            row[f"{protocol}_top1"] = None if result is None else result["top1"]
            row[f"{protocol}_top5"] = None if result is None else result["top5"]
            row[f"{protocol}_seconds"] = (
                None if result is None else result.get("seconds")
            )
        layers = results.get("layers")
        row["layers"] = None if layers is None else layers["layers"]
        row["layers_seconds"] = None if layers is None else layers.get("seconds")
        self.rows.append(row)
        write_report(self.rows, self.output_dir, self.benchmark, self.command)


def _build_row(label: str, config: Config) -> PretrainMethod:
    """The row's method, built to check it; an error names the row."""
    try:
        return build_method(config, with_classes=False)
    except ConfigError:
        raise  # config errors name their key already
    except ValueError as error:  # sizes the method refuses (masks, channels)
        raise ConfigError(f"methods.{label}: {error}") from error


def _check_no_baseline_label(
    benchmark: BenchmarkConfig, configs: Mapping[str, Config]
) -> None:
    """Refuses a method row labelled as a baseline row the benchmark adds: the two
    would share a run folder and be averaged as if they were seeds of one row."""
    baselines = benchmark.baselines
    added = {FROM_SCRATCH: baselines.from_scratch, RAW_PIXELS: baselines.raw_pixels}
    if baselines.single_token is not None:
        added[f"{baselines.single_token}-single-token"] = True
    for label, on in added.items():
        if on and label in configs:
            raise ConfigError(
                f"methods.{label}: this benchmark adds a baseline row of that name; "
                "rename the method row."
            )


def run_benchmark(benchmark: BenchmarkConfig, command: str | None = None) -> Path:
    """Runs a whole benchmark and writes ``results.{md,csv,json}`` and the plots.

    Args:
        benchmark: A checked config (:func:`load_benchmark_config`).
        command: The command line to print in ``results.md`` (the CLI passes its
            own); None leaves it out.

    Returns:
        ``benchmark.output_dir``.

    Raises:
        ConfigError: A method or its options do not resolve.
        BenchmarkError: A pretraining child process failed, or a run folder holds
            a run of a different config.
    """
    configs = method_configs(benchmark)
    _check_no_baseline_label(benchmark, configs)
    # Build every method once before anything trains: an unknown method, a bad
    # option or mask settings that do not fit the encoder fail now.
    methods = {k: _build_row(k, c) for k, c in configs.items()}
    rows: list[tuple[str, str, Config]] = [(k, "method", c) for k, c in configs.items()]
    single = benchmark.baselines.single_token
    if single is not None:
        generator = getattr(methods[single], "mask_generator", None)
        if generator is None:
            raise ConfigError(
                f"baselines.single_token = {single!r} is not a masked-image method "
                "row; name a simmim row, or null."
            )
        ablation = single_token_config(
            configs[single],
            generator.model_patch_size,
            benchmark.baselines.single_token_mask_ratio,
        )
        label = f"{single}-single-token"
        ablation = replace(ablation, name=label)
        build_method(ablation, with_classes=False)  # the ablation's masks fit too
        rows.append((label, "ablation", ablation))
    del methods
    checked = []  # rows usually share their data: load each data setup once
    for label, _, config in rows:
        data = (config.data, config.eval.dataset)
        if data not in checked:
            _check_data(label, config)
            checked.append(data)

    runner = _Runner(benchmark, command)
    for label, kind, config in rows:
        for run in seeded_runs(benchmark, label, config):
            metrics = runner.pretrain(run.name, run.config)
            results = runner.evaluate_pretrained(run.name, run.config, metrics)
            folder = runner.output_dir / "runs" / run.name
            runner.add_row(run, kind, results, metrics, folder)
    first = rows[0][2]
    if benchmark.baselines.from_scratch:
        for run in seeded_runs(benchmark, FROM_SCRATCH, first):
            results = runner.from_scratch(run)
            folder = runner.output_dir / "baselines" / run.name
            runner.add_row(run, "baseline", results, None, folder)
    if benchmark.baselines.raw_pixels and {"knn", "layers"} & set(benchmark.protocols):
        # Deterministic (no weights, no sampling): one run whatever the seeds.
        run = SeededRun(RAW_PIXELS, None, first)
        results = runner.raw_pixels(first)
        folder = runner.output_dir / "baselines" / RAW_PIXELS
        runner.add_row(run, "baseline", results, None, folder, None)
    return runner.output_dir
