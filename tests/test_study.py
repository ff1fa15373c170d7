"""bplab study: parsing study files, designs, resuming, outputs and the written summary."""

import csv
import math
import os
from pathlib import Path

import pytest

from bplab.errors import BplabError
from bplab.experiments import mnist_numpy
from bplab.experiments import study as study_module
from bplab.experiments.study import (
    aggregate,
    configurations,
    load_study,
    parse_study,
    run_study,
    written_summary,
)


def fake_load_mnist(name="mnist", split="train", data_dir=None):
    """Return easy synthetic digits (a class-dependent bright bar), as in test_mnist_numpy."""
    import numpy as np

    rng = np.random.default_rng(0 if split == "train" else 1)
    n = 400 if split == "train" else 100
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, 2 * label + 4 : 2 * label + 7, 4:24] = 255
    return x, y.astype(np.int64)


@pytest.fixture(autouse=True)
def fresh_data_cache():
    """Keep data cached by one test (synthetic or real) out of the next."""
    study_module._DATA_CACHE.clear()
    yield
    study_module._DATA_CACHE.clear()


TINY = {
    "name": "tiny",
    "seeds": [0, 1],
    "base": {"hidden": [16], "epochs": 2, "batch_size": 50, "val_size": 100,
             "optimizer": "sgd", "lr": 0.1, "schedule": "constant"},
    "factors": {"lr": [0.05, 0.2], "activation": ["relu", "tanh"]},
}


def test_shipped_study_covers_factors():
    """The shipped mnist study varies the seven factors with >= 3 seeds."""
    study = load_study("mnist")
    assert len(study.seeds) >= 3
    assert [len(study.factors[f]) for f in ("init", "lr", "l2", "activation", "batch_size",
                                            "hidden", "optimizer")] == [3, 5, 4, 4, 5, 5, 3]
    lrs = [level.overrides["lr"] for level in study.factors["lr"]]
    assert min(lrs) == 1e-3
    assert max(lrs) == 1.0
    full_batch = study.factors["batch_size"][-1].overrides
    assert full_batch["batch_size"] == 0
    cells = configurations(study)
    assert len(cells) == 29
    assert len({cell.key for cell in cells}) == 23  # the base is shared between factors


def test_grid_design_combines_levels():
    """A grid has one cell per combination, labelled with every factor's level."""
    study = parse_study({**TINY, "design": "grid"})
    cells = configurations(study)
    assert len(cells) == 4
    assert cells[0].label == "lr=0.05, activation=relu"
    assert cells[-1].config.lr == 0.2
    assert cells[-1].config.activation == "tanh"


def test_level_tables_set_several_fields():
    """A level given as a table sets all its fields and uses its label."""
    study = parse_study({**TINY, "factors": {"batch_size": [
        60, {"label": "full batch", "batch_size": 0, "epochs": 30}]}})
    cells = configurations(study)
    assert [c.label for c in cells] == ["60", "full batch"]
    assert cells[1].config.batch_size == 0
    assert cells[1].config.epochs == 30


@pytest.mark.parametrize("change,match", [
    ({"design": "random"}, "invalid design 'random'"),
    ({"colour": 1}, "unknown keys"),
    ({"factors": {"widht": [1, 2]}}, "not a config field"),
    ({"factors": {"lr": []}}, "non-empty list"),
    ({"factors": {"lr": ["fast"]}}, "invalid value 'fast' for lr"),
    ({"seeds": []}, "seeds must be"),
    ({"base": {"seed": 3}}, "must not set 'seed'"),
], ids=["design", "key", "factor", "levels", "type", "seeds", "base-seed"])
def test_invalid_study_files(change, match):
    """Mistakes in a study file raise a BplabError naming the problem."""
    with pytest.raises(BplabError, match=match):
        parse_study({**TINY, **change})


def test_missing_study_file(tmp_path):
    """A missing file is reported with the shipped study names."""
    with pytest.raises(BplabError, match="not found.*mnist"):
        load_study(tmp_path / "nope.toml")


def test_summary_computed_from_numbers():
    """The written summary names the best and worst level and flags diverged runs."""
    rows = []
    for seed, (a, b, c) in enumerate([(0.90, 0.95, math.nan), (0.91, 0.96, 0.5)]):
        for level, acc in (("small", a), ("large", b), ("huge", c)):
            rows.append({"factor": "lr", "level": level, "seed": seed, "test_accuracy": acc,
                         "val_accuracy": acc, "loss": 0.1, "seconds": 1.0,
                         "diverged": math.isnan(acc)})
    table = aggregate(rows)
    large = next(e for e in table if e["level"] == "large")
    assert large["test_accuracy_mean"] == pytest.approx(0.955)
    assert large["test_accuracy_std"] == pytest.approx(0.00707, abs=1e-4)
    study = parse_study(TINY)
    text = written_summary(study, table)
    assert "best large (95.50 ± 0.71 %)" in text
    assert "worst huge (50.00 ± 0.00 %)" in text
    assert "huge diverged in 1 of 2 seeds" in text


def test_tiny_study_resumes(monkeypatch, tmp_path):
    """A study writes its outputs; a second call trains nothing, and a lost run is retrained."""
    monkeypatch.setattr(mnist_numpy, "load_mnist", fake_load_mnist)
    study = parse_study(TINY)
    out = tmp_path / "study"
    first = run_study(study, out, jobs=1, progress=False)
    assert first["trained"] == 8
    assert (out / "table.md").exists()
    assert (out / "summary.md").exists()
    assert sorted(p.name for p in out.glob("factor_*.png")) == ["factor_activation.png",
                                                                 "factor_lr.png"]
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert {r["factor"] for r in rows} == {"lr", "activation"}

    again = run_study(study, out, jobs=1, progress=False)
    assert again["trained"] == 0
    assert again["skipped"] == 8
    next(iter((out / "runs").glob("*.json"))).unlink()
    assert run_study(study, out, jobs=1, progress=False)["trained"] == 1


def test_other_study_in_same_folder_rejected(monkeypatch, tmp_path):
    """An output folder of one study is not reused for a different study file."""
    monkeypatch.setattr(mnist_numpy, "load_mnist", fake_load_mnist)
    out = tmp_path / "study"
    tiny = {**TINY, "seeds": [0], "factors": {"lr": [0.1]}}
    run_study(parse_study(tiny), out, jobs=1, progress=False)
    with pytest.raises(BplabError, match="different study"):
        run_study(parse_study({**tiny, "seeds": [1]}), out, jobs=1, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(BplabError, match="not a study folder"):
        run_study(parse_study(tiny), tmp_path / "other", jobs=1, progress=False)


@pytest.mark.realdata
def test_tiny_real_study_in_parallel(tmp_path):
    """2 factors x 2 levels x 2 seeds on real MNIST (few steps, 2 processes) writes every output."""
    root = os.environ.get("BPLAB_DATA_DIR")
    if not root:
        pytest.skip("BPLAB_DATA_DIR is not set; real MNIST is not available")
    if not (Path(root) / "mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST files not found under {root}/mnist")
    spec = {**TINY, "base": {**TINY["base"], "val_size": 5000, "train_subset": 500,
                             "test_subset": 500}}
    result = run_study(parse_study(spec), tmp_path / "study", jobs=2, data_dir=root,
                       progress=False)
    assert result["trained"] == 8
    out = tmp_path / "study"
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 for r in rows)
    table = (out / "table.md").read_text()
    assert "| lr | 0.05 |" in table
    assert "| activation | tanh |" in table
    assert (out / "factor_lr.png").stat().st_size > 0
    assert (out / "factor_activation.png").stat().st_size > 0
