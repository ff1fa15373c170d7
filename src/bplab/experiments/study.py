"""Hyperparameter studies: vary factors of a NumPy MNIST config and tabulate what they do.

A study file (TOML) has a ``[base]`` table of ``MnistConfig`` fields, a ``[factors]`` table that
maps a config field to a list of levels, a list of ``seeds`` and a ``design``:

- ``"one_at_a_time"`` (default): each level of each factor, with every other field at the base;
- ``"grid"``: every combination of the factors' levels.

A level is a plain value for its field, or a table with a ``label`` and several fields, e.g.
``{label = "full batch", batch_size = 0, epochs = 100}``. Identical configurations (the base
appears once per factor) are trained once per seed and shared.

Every run is stored as ``runs/<key>.json`` as soon as it ends, so an interrupted study resumes by
skipping finished runs. Runs go in parallel over ``--jobs`` processes, each limited to
(cores // jobs) BLAS threads. The outputs are results.csv, table.md, summary.md and one
``factor_<name>.png`` per factor.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import numpy as np

from bplab.config import apply_overrides, to_dict
from bplab.errors import BplabError
from bplab.experiments.mnist_numpy import MnistConfig, load_data, train
from bplab.runs import read_json, write_json

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

logger = logging.getLogger(__name__)

DESIGNS = ("one_at_a_time", "grid")
SHIPPED_STUDIES = ("mnist",)
CSV_METRICS = ("test_accuracy", "val_accuracy", "train_accuracy", "test_loss", "loss",
               "epochs", "seconds", "parameters", "diverged")


@dataclass
class Level:
    """One value of a factor: a label and the config fields it sets."""

    label: str
    overrides: dict


@dataclass
class Study:
    """A parsed study file."""

    name: str
    base: MnistConfig
    factors: dict[str, list[Level]]
    seeds: list[int]
    design: str = "one_at_a_time"
    jobs: int = 2
    source: dict = field(default_factory=dict)  # the file's content, saved with the results


@dataclass
class Configuration:
    """One cell of the study: which factor levels it represents and the resolved config."""

    factor: str  # the factor this cell varies ("grid" for a grid design)
    label: str  # the level's label (all factors' labels in a grid)
    config: MnistConfig

    @property
    def key(self) -> str:
        """A short hash of the resolved config, shared by identical cells of different factors."""
        text = json.dumps(to_dict(self.config), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


# --- reading a study file ---------------------------------------------------------------------


def load_study(spec: str | Path) -> Study:
    """Read a study from a TOML path, or the shipped study of that name (e.g. "mnist")."""
    if str(spec) in SHIPPED_STUDIES and not Path(spec).exists():
        text = resources.files("bplab.configs").joinpath(f"{spec}_study.toml").read_text()
        origin = f"shipped study {spec!r}"
    else:
        path = Path(spec)
        if not path.is_file():
            raise BplabError(f"study file {path} not found; give a TOML file or one of the "
                             f"shipped studies: {', '.join(SHIPPED_STUDIES)}")
        text = path.read_text(encoding="utf-8")
        origin = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BplabError(f"{origin} is not valid TOML: {exc}") from None
    return parse_study(data, origin)


def parse_study(data: dict, origin: str = "study") -> Study:
    """Validate a study's dict (as read from TOML) and return the Study."""
    known = {"name", "base", "factors", "seeds", "design", "jobs"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BplabError(f"{origin}: unknown keys {unknown}; valid keys: {', '.join(sorted(known))}")
    design = data.get("design", "one_at_a_time")
    if design not in DESIGNS:
        raise BplabError(f"{origin}: invalid design {design!r}; valid choices: {', '.join(DESIGNS)}")
    seeds = data.get("seeds", [0, 1, 2])
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise BplabError(f"{origin}: seeds must be a non-empty list of integers, got {seeds!r}")
    base_options = data.get("base", {})
    for reserved in ("seed", "preset", "data_dir"):
        if reserved in base_options:
            raise BplabError(f"{origin}: [base] must not set {reserved!r}; seeds go in 'seeds' "
                             "and the data folder in --data-dir")
    base = apply_overrides(MnistConfig(preset="study"), base_options)

    raw_factors = data.get("factors", {})
    if not raw_factors:
        raise BplabError(f"{origin}: [factors] is empty; name at least one config field to vary")
    field_names = {f.name for f in fields(MnistConfig)}
    factors = {}
    for name, values in raw_factors.items():
        if not isinstance(values, list) or not values:
            raise BplabError(f"{origin}: factor {name!r} needs a non-empty list of levels")
        factors[name] = [_parse_level(name, value, field_names, base, origin) for value in values]
    return Study(name=str(data.get("name", "study")), base=base, factors=factors,
                 seeds=list(seeds), design=design, jobs=int(data.get("jobs", 2)), source=data)


def _parse_level(factor: str, value, field_names: set[str], base: MnistConfig,
                 origin: str) -> Level:
    """Turn one TOML level into a Level, checking its fields against MnistConfig."""
    if isinstance(value, dict):
        overrides = {k: v for k, v in value.items() if k != "label"}
        label = str(value.get("label") or ", ".join(f"{k}={v}" for k, v in overrides.items()))
    else:
        if factor not in field_names:
            raise BplabError(f"{origin}: factor {factor!r} is not a config field; use tables "
                             "with explicit fields as its levels, or one of: "
                             f"{', '.join(sorted(field_names))}")
        overrides = {factor: value}
        label = _format_value(value)
    if "seed" in overrides:
        raise BplabError(f"{origin}: factor {factor!r} must not set 'seed'; list seeds in 'seeds'")
    apply_overrides(base, overrides)  # raises on unknown fields or wrong types
    return Level(label, overrides)


def _format_value(value) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return str(value)


def configurations(study: Study) -> list[Configuration]:
    """Return the study's cells in order: factor by factor, or every combination for a grid."""
    if study.design == "grid":
        cells = []
        names = list(study.factors)
        for combo in itertools.product(*(study.factors[n] for n in names)):
            overrides = {}
            for level in combo:
                overrides.update(level.overrides)
            label = ", ".join(f"{n}={level.label}" for n, level in zip(names, combo))
            cells.append(Configuration("grid", label, apply_overrides(study.base, overrides)))
        return cells
    return [Configuration(name, level.label, apply_overrides(study.base, level.overrides))
            for name, levels in study.factors.items() for level in levels]


# --- running ----------------------------------------------------------------------------------

_DATA_CACHE: dict = {}


def _data_for(cfg: MnistConfig):
    """Load (once per process) the data that `cfg` needs."""
    key = (cfg.dataset, cfg.data_dir, cfg.model, cfg.val_size, cfg.train_subset, cfg.test_subset)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_data(cfg)
    return _DATA_CACHE[key]


def run_one(config: dict, path: str, data_dir: str | None = None) -> dict:
    """Train one configuration and write its result JSON to `path`; return the result.

    A run whose loss becomes NaN or infinite is kept as diverged, with NaN accuracies.
    `data_dir` is where the images are read from; it is not part of the stored config.
    """
    cfg = apply_overrides(MnistConfig(), config)
    cfg.data_dir = data_dir
    data = _data_for(cfg)
    start = time.perf_counter()
    result = {"config": config, "diverged": False, "error": None, "records": []}
    try:
        net, history, test = train(cfg, data)
    except BplabError as exc:
        if "diverged" not in str(exc):
            raise
        result.update(diverged=True, error=str(exc), test_accuracy=math.nan,
                      val_accuracy=math.nan, train_accuracy=math.nan, test_loss=math.nan,
                      loss=math.nan, epochs=0, parameters=0)
    else:
        last = history.records[-1]
        result.update(test, val_accuracy=last["val_accuracy"],
                      train_accuracy=last["train_accuracy"], loss=last["loss"],
                      epochs=len(history.records), parameters=net.num_parameters(),
                      records=history.records)
    result["seconds"] = time.perf_counter() - start
    write_json(path, result)
    return result


def _init_worker(threads: int) -> None:
    """Limit each worker's BLAS threads so that parallel runs do not oversubscribe the cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(threads)


def run_study(study: Study, out: str | Path, jobs: int | None = None,
              data_dir: str | None = None, progress: bool = True) -> dict:
    """Run every missing (configuration, seed) pair, then write the tables, figures and summary.

    Returns a dict with the output paths, the number of runs trained now and skipped, and the
    wall time of this call.
    """
    out = Path(out)
    _prepare_output(study, out)
    jobs = max(1, jobs or study.jobs)
    cells = configurations(study)
    tasks = {}
    for cell in cells:
        for seed in study.seeds:
            run_key = f"{cell.key}-seed{seed}"
            cfg = to_dict(cell.config) | {"seed": seed}
            tasks.setdefault(run_key, cfg)
    runs_dir = out / "runs"
    missing = {k: cfg for k, cfg in tasks.items() if not (runs_dir / f"{k}.json").exists()}
    logger.info("study %s: %d configurations x %d seeds = %d runs (%d distinct, %d to train) "
                "with %d jobs", study.name, len(cells), len(study.seeds),
                len(cells) * len(study.seeds), len(tasks), len(missing), jobs)

    start = time.perf_counter()
    _execute(missing, runs_dir, jobs, data_dir, progress)
    wall = time.perf_counter() - start

    results = {k: read_json(runs_dir / f"{k}.json") for k in tasks}
    rows = _result_rows(study, cells, results)
    paths = write_outputs(study, cells, rows, results, out)
    timing = read_json(out / "study.json")
    timing["wall_seconds"].append(round(wall, 1))
    write_json(out / "study.json", timing)
    return {"out": str(out), "trained": len(missing), "skipped": len(tasks) - len(missing),
            "wall_seconds": wall, **paths}


def _prepare_output(study: Study, out: Path) -> None:
    """Create the output folder, or check that an existing one belongs to the same study."""
    marker = out / "study.json"
    if out.exists() and any(out.iterdir()):
        if not marker.exists():
            raise BplabError(f"{out} exists and is not a study folder; choose another --out")
        if read_json(marker)["study"] != json.loads(json.dumps(study.source)):
            raise BplabError(f"{out} contains the results of a different study file; choose "
                             "another --out to keep both")
        return
    (out / "runs").mkdir(parents=True, exist_ok=True)
    write_json(marker, {"study": study.source, "wall_seconds": []})


def _execute(tasks: dict[str, dict], runs_dir: Path, jobs: int, data_dir: str | None,
             progress: bool) -> None:
    """Train the tasks, in worker processes when jobs > 1."""
    from tqdm.auto import tqdm

    runs_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(tasks), desc="study", unit="run", disable=not progress)
    if jobs == 1 or len(tasks) <= 1:
        for key, cfg in tasks.items():
            run_one(cfg, str(runs_dir / f"{key}.json"), data_dir)
            bar.update()
        bar.close()
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(run_one, cfg, str(runs_dir / f"{key}.json"), data_dir): key
                   for key, cfg in tasks.items()}
        for future in as_completed(futures):
            future.result()  # re-raise a worker's error here
            bar.update()
    bar.close()


# --- tables, figures, summary -----------------------------------------------------------------


def _result_rows(study: Study, cells: list[Configuration], results: dict) -> list[dict]:
    """Return one CSV row per (cell, seed)."""
    rows = []
    for cell in cells:
        for seed in study.seeds:
            result = results[f"{cell.key}-seed{seed}"]
            row = {"factor": cell.factor, "level": cell.label, "seed": seed}
            row.update({m: result.get(m) for m in CSV_METRICS})
            rows.append(row)
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    """Return mean and std over seeds per (factor, level), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["factor"], row["level"]), []).append(row)
    table = []
    for (factor, level), members in groups.items():
        entry = {"factor": factor, "level": level, "n": len(members),
                 "diverged": sum(bool(m["diverged"]) for m in members)}
        for metric in ("test_accuracy", "val_accuracy", "loss", "seconds"):
            values = np.array([m[metric] for m in members], dtype=float)
            finite = values[np.isfinite(values)]
            entry[f"{metric}_mean"] = float(finite.mean()) if len(finite) else math.nan
            entry[f"{metric}_std"] = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
        table.append(entry)
    return table


def write_outputs(study: Study, cells, rows, results, out: Path) -> dict:
    """Write results.csv, table.md, summary.md and one figure per factor; return their paths."""
    from bplab.report.plots import save_figure
    from bplab.report.study_plots import plot_factor

    csv_path = out / "results.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["factor", "level", "seed", *CSV_METRICS])
        writer.writeheader()
        writer.writerows(rows)

    table = aggregate(rows)
    (out / "table.md").write_text(markdown_table(study, table), encoding="utf-8")
    (out / "summary.md").write_text(written_summary(study, table), encoding="utf-8")

    figures = []
    for factor in dict.fromkeys(cell.factor for cell in cells):
        factor_cells = [c for c in cells if c.factor == factor]
        entries = [e for e in table if e["factor"] == factor]
        curves = {c.label: [results[f"{c.key}-seed{s}"]["records"] for s in study.seeds]
                  for c in factor_cells}
        path = out / f"factor_{_slug(factor)}.png"
        save_figure(plot_factor(factor, entries, curves), path)
        figures.append(str(path))
    return {"csv": str(csv_path), "table": str(out / "table.md"),
            "summary": str(out / "summary.md"), "figures": figures}


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_") or "factor"


def _pct(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "diverged"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def markdown_table(study: Study, table: list[dict]) -> str:
    """Return the Markdown table of mean ± std over seeds per configuration."""
    lines = [f"# Study {study.name}: mean ± std over {len(study.seeds)} seeds", "",
             _base_description(study), "",
             "| factor | level | test accuracy % | val accuracy % | final train loss | "
             "seconds per run | diverged |",
             "|---|---|---|---|---|---|---|"]
    for e in table:
        loss = (f"{e['loss_mean']:.4f} ± {e['loss_std']:.4f}"
                if math.isfinite(e["loss_mean"]) else "diverged")
        lines.append(
            f"| {e['factor']} | {e['level']} | {_pct(e['test_accuracy_mean'], e['test_accuracy_std'])}"
            f" | {_pct(e['val_accuracy_mean'], e['val_accuracy_std'])} | {loss}"
            f" | {e['seconds_mean']:.1f} | {e['diverged']}/{e['n']} |")
    return "\n".join(lines) + "\n"


def _base_description(study: Study) -> str:
    base = to_dict(study.base)
    keys = ("dataset", "model", "hidden", "activation", "init", "optimizer", "lr", "schedule", "l2",
            "batch_size", "epochs", "train_subset")
    return "Base configuration: " + ", ".join(f"{k}={base[k]}" for k in keys) + "."


def written_summary(study: Study, table: list[dict]) -> str:
    """Return a short summary per factor, computed from the aggregated numbers."""
    lines = [f"# Study {study.name}: what each factor did", "", _base_description(study),
             f"Test accuracy is the mean over {len(study.seeds)} seeds (± one standard deviation).",
             ""]
    for factor in dict.fromkeys(e["factor"] for e in table):
        entries = [e for e in table if e["factor"] == factor]
        lines.append(f"- **{factor}**: " + _factor_sentence(entries))
    return "\n".join(lines) + "\n"


def _factor_sentence(entries: list[dict]) -> str:
    """Describe the best and worst levels, the spread, and any diverged runs of one factor."""
    finite = [e for e in entries if math.isfinite(e["test_accuracy_mean"])]
    parts = []
    if finite:
        best = max(finite, key=lambda e: e["test_accuracy_mean"])
        worst = min(finite, key=lambda e: e["test_accuracy_mean"])
        spread = 100 * (best["test_accuracy_mean"] - worst["test_accuracy_mean"])
        parts.append(f"best {best['level']} "
                     f"({_pct(best['test_accuracy_mean'], best['test_accuracy_std'])} %)")
        if len(finite) > 1:
            parts.append(f"worst {worst['level']} "
                         f"({_pct(worst['test_accuracy_mean'], worst['test_accuracy_std'])} %), "
                         f"a spread of {spread:.2f} points")
            noise = max(e["test_accuracy_std"] for e in finite) * 100
            if spread <= 2 * noise:
                parts.append("within about twice the seed-to-seed std, so the levels are not "
                             "clearly different")
            else:
                # A level is "as good as the best" when the gap is below the larger of the two
                # seed-to-seed stds.
                ties = [e["level"] for e in finite if e is not best and
                        best["test_accuracy_mean"] - e["test_accuracy_mean"]
                        <= max(best["test_accuracy_std"], e["test_accuracy_std"])]
                if ties:
                    parts.append(f"{', '.join(map(str, ties))} within one std of the best")
        fastest = min(finite, key=lambda e: e["seconds_mean"])
        slowest = max(finite, key=lambda e: e["seconds_mean"])
        if slowest["seconds_mean"] > 1.5 * fastest["seconds_mean"]:
            parts.append(f"runs took {fastest['seconds_mean']:.1f} s ({fastest['level']}) to "
                         f"{slowest['seconds_mean']:.1f} s ({slowest['level']})")
    diverged = [e for e in entries if e["diverged"]]
    for e in diverged:
        parts.append(f"{e['level']} diverged in {e['diverged']} of {e['n']} seeds")
    return "; ".join(parts) + "."


# --- command line -----------------------------------------------------------------------------


def register(subparsers) -> None:
    """Add the ``bplab study`` command."""
    parser = subparsers.add_parser(
        "study", help="run a hyperparameter study of the NumPy MNIST network",
        description="Run a hyperparameter study from a TOML file (or 'mnist' for the shipped "
                    "one): results.csv, table.md, summary.md and one figure per factor. Run the "
                    "same command with the same --out again to resume an interrupted study.")
    parser.add_argument("study", help="a study TOML file, or 'mnist' for the shipped study")
    parser.add_argument("--jobs", type=int, help="parallel worker processes (default: the "
                                                 "study file's 'jobs', else 2)")
    parser.add_argument("--out", help="output folder; an existing folder of the same study is "
                                      "resumed (default: runs/study/<name>)")
    parser.add_argument("--data-dir", help="folder holding mnist/ and fashion-mnist/ (default: "
                                           "$BPLAB_DATA_DIR or the user cache)")
    parser.set_defaults(func=_study_command)


def _study_command(args: argparse.Namespace) -> int:
    study = load_study(args.study)
    if args.jobs is not None and args.jobs < 1:
        raise BplabError(f"invalid --jobs {args.jobs}: must be >= 1")
    out = args.out or Path("runs") / "study" / study.name
    result = run_study(study, out, jobs=args.jobs, data_dir=args.data_dir)
    print(f"study {study.name}: trained {result['trained']} runs, skipped {result['skipped']} "
          f"finished ones, {result['wall_seconds']:.0f} s; see {result['table']} and "
          f"{result['summary']}")
    return 0
