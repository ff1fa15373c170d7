"""Trainer: exact resume, task-agnostic targets, metrics, schedules and checkpoints."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _torch_fixtures import make_image_folder  # noqa: E402
from bplab.cli import main  # noqa: E402
from bplab.errors import BplabError  # noqa: E402
from bplab.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from bplab.training.loop import Trainer  # noqa: E402
from bplab.training.metrics import classification_report, confusion_matrix  # noqa: E402
from bplab.training.optim import ScheduleConfig, schedule_factor  # noqa: E402

RESUME_ARGS = ["--model", "resnet_course", "--epochs", "2", "--val-size", "12",
               "--batch-size", "16", "--threads", "1", "--deterministic", "--seed", "3",
               "--schedule", "cosine", "--model-arg", "drop_rate=0.2"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A 3-class folder of 16x16 grayscale images split into train/ and test/."""
    return make_image_folder(tmp_path_factory.mktemp("data") / "shapes",
                             {"train": 20, "test": 4}, seed=1)


def test_resume_gives_identical_weights(shapes, tmp_path):
    """2 epochs straight equal 1 epoch, then --resume for the second, bit for bit."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "--dataset", str(shapes), "--out", str(straight), *RESUME_ARGS]) == 0
    assert main(["train", "--dataset", str(shapes), "--out", str(split), "--stop-after", "1",
                 *RESUME_ARGS]) == 0
    assert load_checkpoint(split / "last.pt")["state"]["epoch"] == 1
    assert main(["train", "--resume", str(split)]) == 0

    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert a["state"] == b["state"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_resume_rejects_changed_config(shapes, tmp_path, capsys):
    """--resume refuses flags that would change the saved run, and a finished run."""
    run = tmp_path / "run"
    args = ["--model", "lenet5", "--epochs", "1", "--val-size", "12", "--threads", "1"]
    assert main(["train", "--dataset", str(shapes), "--out", str(run), *args]) == 0
    assert main(["train", "--resume", str(run), "--lr", "0.5"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert main(["train", "--resume", str(run)]) == 2
    assert "already finished 1 of 1 epochs" in capsys.readouterr().err


def test_resume_missing_checkpoint(tmp_path, capsys):
    """--resume on a folder without last.pt names the missing file."""
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "last.pt not found" in capsys.readouterr().err


def test_trainer_with_tuple_targets():
    """The trainer passes any target structure through to the caller's loss and metric."""
    torch.manual_seed(0)
    x = torch.randn(40, 6)
    y = (x[:, :3] > 0).float()  # (N, 3) multi-hot
    mask = torch.ones_like(y)
    dataset = torch.utils.data.TensorDataset(x, y, mask)

    def collate(items):
        xs, ys, masks = zip(*items)
        return torch.stack(xs), (torch.stack(ys), torch.stack(masks))

    loader = torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=collate)
    model = torch.nn.Linear(6, 3)

    def loss_fn(logits, target):
        y, mask = target
        per_label = torch.nn.functional.binary_cross_entropy_with_logits(logits, y,
                                                                         reduction="none")
        return (per_label * mask).sum() / mask.sum()

    def metric_fn(logits, target):
        y, _ = target
        assert logits.shape == y.shape == (40, 3)
        return {"exact": ((logits > 0).float() == y).all(dim=1).float().mean().item()}

    trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=0.05), loss_fn, loader,
                      loader, metric_fn=metric_fn, monitor="val_exact", monitor_mode="max",
                      max_epochs=15)
    history = trainer.fit()
    assert len(history) == 15
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert history[-1]["val_exact"] > 0.8
    assert trainer.state.best_metric == max(h["val_exact"] for h in history)


def test_trainer_rejects_unlogged_monitor():
    """Monitoring a key that is never logged raises a BplabError listing the logged keys."""
    data = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.zeros(8, dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    model = torch.nn.Linear(2, 2)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                      torch.nn.CrossEntropyLoss(), loader, loader, monitor="val_f1",
                      max_epochs=1)
    with pytest.raises(BplabError, match="'val_f1' is not logged.*val_loss"):
        trainer.fit()


def test_classification_report_matches_sklearn():
    """Per-class and averaged precision/recall/F1 equal scikit-learn's."""
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, size=200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, size=200))
    y_pred[y_pred == 3] = 2  # class 3 is never predicted: precision 0, not NaN
    report = classification_report(y_true, y_pred, ["a", "b", "c", "d"])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    for i, name in enumerate("abcd"):
        row = report["per_class"][name]
        assert row["precision"] == pytest.approx(p[i])
        assert row["recall"] == pytest.approx(r[i])
        assert row["f1"] == pytest.approx(f[i])
        assert row["support"] == s[i]
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        assert report[avg]["precision"] == pytest.approx(p)
        assert report[avg]["recall"] == pytest.approx(r)
        assert report[avg]["f1"] == pytest.approx(f)
    assert report["accuracy"] == pytest.approx(np.mean(y_true == y_pred))


def test_confusion_matrix_rows_are_true_classes():
    """Row i, column j counts samples of true class i predicted as j."""
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])


def test_schedule_warmup_then_cosine():
    """Warm-up rises linearly to the peak; cosine then falls to min_lr_ratio at the end."""
    cfg = ScheduleConfig(name="cosine", warmup_epochs=1, min_lr_ratio=0.1)
    factors = [schedule_factor(cfg, step, total_steps=40, steps_per_epoch=10)
               for step in range(40)]
    assert factors[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert schedule_factor(cfg, 40, 40, 10) == pytest.approx(0.1)
    step_cfg = ScheduleConfig(name="step", step_epochs=2, gamma=0.5)
    assert [schedule_factor(step_cfg, s, 60, 10) for s in (0, 19, 20, 40)] == [1, 1, 0.5, 0.25]


def test_checkpoint_is_atomic_and_named_when_corrupt(tmp_path):
    """save_checkpoint leaves no temporary file; a truncated checkpoint raises naming it."""
    path = save_checkpoint(tmp_path / "last.pt", {"weights": torch.arange(4)})
    assert os.listdir(tmp_path) == ["last.pt"]
    assert torch.equal(load_checkpoint(path)["weights"], torch.arange(4))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(BplabError, match="last.pt could not be read"):
        load_checkpoint(path)


@pytest.mark.realdata
def test_lenet5_on_real_mnist_subset(tmp_path):
    """lenet5 on 2,000 MNIST images for one epoch scores >= 90 % on 1,000 test images."""
    data_dir = os.environ.get("BPLAB_DATA_DIR")
    if not data_dir or not os.path.isfile(
            os.path.join(data_dir, "mnist", "train-images-idx3-ubyte.gz")):
        pytest.skip("BPLAB_DATA_DIR is unset or has no mnist/ IDX files")
    import json

    run = tmp_path / "run"
    status = main(["train", "--model", "lenet5", "--dataset", "mnist", "--data-dir", data_dir,
                   "--train-subset", "2000", "--test-subset", "1000", "--val-size", "500",
                   "--epochs", "1", "--batch-size", "8", "--lr", "3e-3", "--schedule", "onecycle",
                   "--augment", "none", "--threads", "1", "--seed", "0", "--out", str(run)])
    assert status == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_images"] == 1000
    assert summary["test_accuracy"] >= 0.90


def test_early_stopping_after_patience():
    """EarlyStopping ends fit once the monitored metric has not improved for `patience` epochs."""
    from bplab.training.callbacks import EarlyStopping

    data = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.zeros(8, dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    model = torch.nn.Linear(2, 2)
    scores = iter([0.5, 0.7, 0.6, 0.7, 0.65, 0.9])  # best at epoch 2, then no improvement
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0),
                      torch.nn.CrossEntropyLoss(), loader, loader,
                      metric_fn=lambda logits, y: {"score": next(scores)}, monitor="val_score",
                      monitor_mode="max", max_epochs=6, callbacks=[EarlyStopping(patience=3)])
    history = trainer.fit()
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert trainer.state.best_epoch == 2
    assert trainer.state.best_metric == 0.7
    assert [h["is_best"] for h in history] == [True, True, False, False, False]
