"""bplab mnist: presets, LeNet-5, the run folder, and (with BPLAB_DATA_DIR) real MNIST."""

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bplab.cli import main
from bplab.engine.losses import get_loss
from bplab.errors import BplabError
from bplab.experiments import mnist_numpy
from bplab.experiments.mnist_numpy import (
    build_lenet5,
    build_model,
    load_data,
    preset_config,
    run_mnist,
    train,
)


def fake_load_mnist(name="mnist", split="train", data_dir=None):
    """Return easy synthetic digits: class k is a bright horizontal bar at rows 2k+4..2k+6."""
    rng = np.random.default_rng(0 if split == "train" else 1)
    n = 700 if split == "train" else 200
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, 2 * label + 4 : 2 * label + 7, 4:24] = 255
    return x, y.astype(np.int64)


@pytest.fixture
def fake_mnist(monkeypatch):
    """Serve synthetic images in place of the MNIST files."""
    monkeypatch.setattr(mnist_numpy, "load_mnist", fake_load_mnist)


def test_course_preset_converts_summed_lr():
    """The course preset is 784-128-10 ReLU, He, SGD, batch 60, 10 epochs, lr 0.01 * 60."""
    cfg = preset_config("course")
    assert cfg.hidden == (128,)
    assert cfg.activation == "relu"
    assert cfg.init == "he_normal"
    assert cfg.optimizer == "sgd"
    assert cfg.batch_size == 60
    assert cfg.epochs == 10
    assert cfg.lr == pytest.approx(0.6)
    assert cfg.l2 == 0.0


def test_default_preset_within_parameter_cap():
    """The default MLP preset has at most 300,000 parameters and trains at most 10 epochs."""
    cfg = preset_config("default")
    assert build_model(cfg).num_parameters() <= 300_000
    assert cfg.epochs <= 10


def test_lenet_preset_at_most_five_epochs():
    """The LeNet preset builds LeNet-5 (61,706 parameters) and trains at most 5 epochs."""
    cfg = preset_config("default", "lenet")
    assert cfg.epochs <= 5
    assert build_model(cfg).num_parameters() == 61_706


def test_unknown_preset_model_pairs():
    """The course preset has no LeNet variant; unknown names list the valid ones."""
    with pytest.raises(BplabError, match="no lenet variant"):
        preset_config("course", "lenet")
    with pytest.raises(BplabError, match="valid choices: course, default"):
        preset_config("nope")
    with pytest.raises(BplabError, match="valid choices: lenet, mlp"):
        preset_config("default", "resnet")


def test_lenet_shapes_and_gradients():
    """LeNet-5 maps (N, 1, 28, 28) to (N, 10) logits and every parameter receives a gradient."""
    rng = np.random.default_rng(0)
    net = build_lenet5(rng=rng)
    x = rng.random((4, 1, 28, 28), dtype=np.float32)
    logits = net.forward(x)
    assert logits.shape == (4, 10)
    assert np.isfinite(logits).all()
    loss = get_loss("cross_entropy")
    loss.forward(logits, np.array([0, 1, 2, 3]))
    net.backward(loss.backward())
    for name, _, grad in net.named_parameters():
        assert np.abs(grad).sum() > 0, f"{name} got no gradient"


def test_lenet_learns_synthetic_bars(fake_mnist):
    """A two-epoch LeNet separates the synthetic bar classes."""
    cfg = replace(preset_config("default", "lenet"), epochs=2, val_size=100, batch_size=32)
    _, history, test = train(cfg, load_data(cfg))
    assert history.records[-1]["loss"] < history.records[0]["loss"]
    assert test["test_accuracy"] >= 0.9


def test_run_folder_contents(fake_mnist, tmp_path):
    """A run writes config, metrics per epoch, summary with test_accuracy and three figures."""
    cfg = replace(preset_config("course"), epochs=2, val_size=100, hidden=(32,))
    summary = run_mnist(cfg, out=tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "summary.json", "curves.png", "confusion.png",
                 "model.npz", "model.json"):
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    saved = json.loads((run / "summary.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert 0.0 <= saved["test_accuracy"] <= 1.0
    assert json.loads((run / "config.json").read_text())["lr"] == pytest.approx(0.6)


def test_cli_rejects_course_lenet(capsys):
    """`bplab mnist --preset course --model lenet` exits 2 with one error line."""
    assert main(["mnist", "--preset", "course", "--model", "lenet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "no lenet variant" in err[0]


def test_cli_set_overrides(fake_mnist, tmp_path, capsys):
    """`--set` overrides config fields and a wrong key is a one-line error."""
    out = tmp_path / "run"
    status = main(["mnist", "--epochs", "1", "--set", "hidden=16", "--set", "val_size=100",
                   "--out", str(out)])
    assert status == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hidden"] == [16]
    assert cfg["epochs"] == 1
    assert main(["mnist", "--set", "hiden=16"]) == 2
    assert "unknown config key 'hiden'" in capsys.readouterr().err


def _real_data_dir() -> Path:
    root = os.environ.get("BPLAB_DATA_DIR")
    if not root:
        pytest.skip("BPLAB_DATA_DIR is not set; real MNIST is not available")
    if not (Path(root) / "mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST files not found under {root}/mnist")
    return Path(root)


@pytest.mark.realdata
def test_one_epoch_mlp_on_real_subset():
    """One epoch on 5,000 real MNIST images gives at least 90 % on the first 1,000 test images.

    No one-epoch MLP tried here reached 93 % (widths 100-512,
    one or two layers, BatchNorm, batches 4-32, Adam or momentum, constant or cosine rates):
    they gave 88-92.6 %. This configuration gave 92.1 % with seed 0.
    """
    root = _real_data_dir()
    cfg = replace(preset_config("default"), hidden=(256, 256), optimizer="adam", lr=3e-3,
                  schedule="cosine", batch_size=16, epochs=1, train_subset=5000,
                  test_subset=1000, data_dir=str(root))
    data = load_data(cfg)
    assert data.x_train.shape == (5000, 784)
    assert data.x_test.shape == (1000, 784)
    _, _, test = train(cfg, data)
    assert test["test_accuracy"] >= 0.90
