"""The two-moons experiment: accuracy of both presets, the run folder and CLI errors."""

import json
from dataclasses import replace

import numpy as np
import pytest

from bplab.cli import main
from bplab.data.moons import load_moons
from bplab.engine.io import load_network
from bplab.errors import BplabError
from bplab.experiments.moons import PRESETS, run_moons

RUN_FILES = ["config.json", "metrics.jsonl", "summary.json", "decision_boundary.png",
             "curves.png", "training.gif", "model.npz", "model.json", "report.html"]


def test_default_preset_reaches_096(tmp_path):
    """The default preset reaches test accuracy >= 0.96 at noise 0.2."""
    cfg = replace(PRESETS["default"], gif_frames=0)  # the GIF is checked by the CLI test
    summary = run_moons(cfg, out=tmp_path / "run", progress=False)
    assert cfg.noise == 0.2
    assert summary["test_accuracy"] >= 0.96


def test_course_preset_reaches_085(tmp_path):
    """The course preset (100 points, 70/30, 2-7-2 tanh, full batch) reaches >= 0.85 on 30 test points."""
    cfg = PRESETS["course"]
    summary = run_moons(cfg, out=tmp_path / "run", progress=False)
    data = load_moons(cfg.n, cfg.noise, cfg.seed, cfg.val_fraction, cfg.test_fraction)
    assert len(data.x_train) == 70
    assert len(data.x_test) == 30
    assert summary["epochs"] == 100
    assert summary["test_accuracy"] >= 0.85


def test_course_preset_converts_summed_gradient_settings():
    """The course's summed-gradient lr 0.03 and L2 0.005 over 70 points become 2.1 and 0.005/70."""
    cfg = PRESETS["course"]
    assert cfg.lr == pytest.approx(0.03 * 70)
    assert cfg.l2 == pytest.approx(0.005 / 70)
    assert cfg.hidden == (7,)
    assert cfg.activation == "tanh"


def test_cli_two_epochs_writes_every_file(tmp_path, capsys):
    """`bplab moons --epochs 2 --out DIR` writes every run file and prints one result line."""
    out = tmp_path / "run"
    assert main(["moons", "--epochs", "2", "--out", str(out)]) == 0
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert {"loss", "train_accuracy", "val_accuracy"} <= set(json.loads(lines[0]))
    summary = json.loads((out / "summary.json").read_text())
    for key in ("train_accuracy", "val_accuracy", "test_accuracy", "epochs", "seconds"):
        assert key in summary
    assert f"run folder: {out}" in capsys.readouterr().out


def test_saved_model_predicts_like_run(tmp_path):
    """The model saved in the run folder reproduces the reported test accuracy."""
    out = tmp_path / "run"
    cfg = replace(PRESETS["default"], gif_frames=0)
    summary = run_moons(cfg, out=out, progress=False)
    net, _ = load_network(out / "model")
    data = load_moons(cfg.n, cfg.noise, cfg.seed, cfg.val_fraction, cfg.test_fraction)
    pred = np.argmax(net.eval().forward(data.x_test.astype(np.float32)), axis=1)
    assert np.mean(pred == data.y_test) == pytest.approx(summary["test_accuracy"])


@pytest.mark.parametrize("argv,expected", [
    (["--activation", "swish"], "invalid choice: 'swish' (choose from 'elu', 'gelu'"),
    (["--noise", "-0.1"], "--noise: invalid value -0.1: must be a finite number >= 0"),
    (["--noise", "inf"], "--noise: invalid value inf: must be a finite number >= 0"),
    (["--l2", "inf"], "--l2: invalid value inf: must be a finite number >= 0"),
    (["--seed", "-1"], "--seed: invalid value -1: must be an integer in [0, 4294967295]"),
    (["--n", "abc"], "--n: invalid value abc: must be an integer"),
    (["--hidden", "8,x"], "--hidden: invalid value '8,x'"),
    (["--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
])
def test_cli_bad_argument_one_line(argv, expected, capsys):
    """A bad argument prints one line naming the problem and exits non-zero."""
    with pytest.raises(SystemExit) as exc:
        main(["moons", *argv])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert expected in err[0]


def test_cli_existing_out_folder_kept(tmp_path, capsys):
    """An --out folder that contains files is rejected and left untouched."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["moons", "--epochs", "1", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_html_report_links_figures(tmp_path):
    """report.html shows the summary and links every figure of the run."""
    out = tmp_path / "run"
    assert main(["moons", "--epochs", "2", "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "test_accuracy" in page
    for name in ("decision_boundary.png", "curves.png", "training.gif"):
        assert f"src='{name}'" in page


def test_cli_diverging_run_names_partial_folder(tmp_path, capsys):
    """A diverging run exits 2 with one line naming the epoch and the partial run folder."""
    out = tmp_path / "run"
    argv = ["moons", "--epochs", "3", "--activation", "relu", "--optimizer", "sgd", "--lr", "1e30",
            "--gif-frames", "0", "--out", str(out)]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bplab")]
    assert len(err) == 1
    assert "training diverged" in err[0]
    assert f"{out} keeps config.json" in err[0]


def test_cli_interrupt_names_partial_folder(tmp_path, capsys, monkeypatch):
    """Ctrl-C during training exits 130 with one line naming the partial run folder."""
    import bplab.experiments.moons as moons

    def interrupted_fit(*args, callbacks, **kwargs):
        callbacks[0]({"epoch": 1, "loss": 0.5}, None)
        raise KeyboardInterrupt

    monkeypatch.setattr(moons, "fit", interrupted_fit)
    out = tmp_path / "run"
    assert main(["moons", "--gif-frames", "0", "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bplab: interrupted: {out} keeps config.json and metrics.jsonl of the 1 "
                   "finished epochs"]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.jsonl"]


def test_cli_out_that_cannot_be_created(tmp_path, capsys):
    """An --out below a file gives one error line, not a traceback."""
    (tmp_path / "file").write_text("mine")
    assert main(["moons", "--epochs", "1", "--out", str(tmp_path / "file" / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "cannot create run folder" in err[0]
    assert (tmp_path / "file").read_text() == "mine"


def test_load_moons_rejects_bad_noise_and_seed():
    """load_moons rejects infinite noise and seeds scikit-learn cannot take."""
    with pytest.raises(BplabError, match="invalid noise inf"):
        load_moons(100, float("inf"), 0)
    with pytest.raises(BplabError, match="invalid seed -1"):
        load_moons(100, 0.1, -1)


def test_patience_without_val_split_warns(tmp_path, caplog):
    """--patience with the course preset, which has no val split, is reported as ignored."""
    cfg = replace(PRESETS["course"], epochs=2, patience=5, gif_frames=0)
    with caplog.at_level("WARNING", logger="bplab.experiments.moons"):
        summary = run_moons(cfg, out=tmp_path / "run", progress=False)
    assert "patience 5 is ignored" in caplog.text
    assert summary["epochs"] == 2


def test_gif_ends_with_kept_weights(tmp_path):
    """With early stopping, training.gif ends on the restored best weights, not the last epoch's."""
    from PIL import Image

    cfg = replace(PRESETS["default"], n=200, epochs=40, patience=3, gif_frames=5)
    summary = run_moons(cfg, out=tmp_path / "run", progress=False)
    assert summary["stopped_early"]
    with Image.open(tmp_path / "run" / "training.gif") as gif:
        frames = gif.n_frames
    epochs_drawn = sum(1 for e in np.linspace(1, 40, 5).round() if e <= summary["epochs"])
    assert frames == epochs_drawn + 1
