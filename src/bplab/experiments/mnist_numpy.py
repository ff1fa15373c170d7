"""MNIST and Fashion-MNIST with the NumPy engine: an MLP or a LeNet-5, from one command.

``bplab mnist`` trains one network and writes a run folder (config.json, metrics.jsonl,
summary.json, curves.png, confusion.png, misclassified.png and the weights). The 60,000 training
images are split 55,000 / 5,000 into train and validation with a fixed seed, so every run sees the
same validation images; the test set is evaluated once, after training.

Converting the course's summed gradients to mean gradients: the course updates
``W -= lr_sum * sum_i g_i`` over a batch of B = 60 images with lr_sum = 0.01. Written with the
batch mean, that is ``W -= (lr_sum * B) * mean_i g_i``, so the same steps come from a mean-gradient
learning rate ``0.01 * 60 = 0.6``, which the ``course`` preset uses with plain SGD.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bplab.config import apply_overrides, parse_set_options, to_dict
from bplab.data.mnist import CLASS_NAMES, load_mnist, train_val_split
from bplab.engine.activations import get_activation
from bplab.engine.conv import Conv2d, MaxPool2d
from bplab.engine.io import save_network
from bplab.engine.layers import Flatten, Linear
from bplab.engine.losses import get_loss
from bplab.engine.network import Sequential, build_mlp
from bplab.engine.schedules import get_schedule
from bplab.engine.trainer import evaluate, fit
from bplab.errors import BplabError, unknown_name_error
from bplab.report.plots import plot_confusion_matrix, plot_curves, plot_image_grid, save_figure
from bplab.runs import MetricsLog, make_run_dir, write_json

logger = logging.getLogger(__name__)

COURSE_BATCH_SIZE = 60
COURSE_LR_SUMMED = 0.01
MODELS = ("mlp", "lenet")
SPLIT_SEED = 0  # seeds the train/val split and the training subset, the same for every run
N_MISCLASSIFIED = 32  # test images shown in misclassified.png


@dataclass
class MnistConfig:
    """Settings of one NumPy MNIST run."""

    preset: str = "default"  # the preset these values started from
    dataset: str = "mnist"  # "mnist" or "fashion-mnist"
    model: str = "mlp"  # "mlp" or "lenet"
    hidden: tuple[int, ...] = (256,)  # MLP hidden widths (ignored by lenet)
    activation: str = "relu"  # hidden activation
    init: str = "he_normal"  # weight initializer
    optimizer: str = "adam"  # sgd, momentum, nesterov, rmsprop, adam, adamw
    lr: float = 1e-3  # learning rate for mean (not summed) gradients
    schedule: str = "cosine"  # learning-rate schedule: constant, step, exponential, cosine
    l2: float = 0.0  # coefficient of l2 / 2 * sum(W ** 2)
    dropout: float = 0.0  # MLP dropout after each hidden activation
    batch_size: int = 64  # images per step; 0 means the whole training split (full batch)
    epochs: int = 10  # passes over the training split (steps, with full batch)
    val_size: int = 5000  # validation images carved from the 60,000 training images
    train_subset: int = 0  # use only this many training images (0: all of the train split)
    test_subset: int = 0  # evaluate on only the first this-many test images (0: all 10,000)
    seed: int = 0  # seeds the weights and the shuffling
    data_dir: str | None = None  # data root holding mnist/ and fashion-mnist/ (default: cache)


# Each preset is keyed by (preset, model); `--model lenet` picks the LeNet entry.
PRESETS: dict[tuple[str, str], MnistConfig] = {
    ("default", "mlp"): MnistConfig(),
    ("default", "lenet"): MnistConfig(model="lenet", hidden=(), optimizer="adam", lr=2e-3,
                                      schedule="cosine", batch_size=64, epochs=5),
    ("course", "mlp"): MnistConfig(
        preset="course", hidden=(128,), activation="relu", init="he_normal", optimizer="sgd",
        lr=COURSE_LR_SUMMED * COURSE_BATCH_SIZE, schedule="constant",
        batch_size=COURSE_BATCH_SIZE, epochs=10,
    ),
}


def preset_config(preset: str = "default", model: str = "mlp") -> MnistConfig:
    """Return a copy of the preset's config for `model`."""
    if model not in MODELS:
        raise unknown_name_error("model", model, MODELS)
    if (preset, model) not in PRESETS:
        valid = sorted({name for name, _ in PRESETS})
        if preset in valid:
            raise BplabError(f"preset {preset!r} has no {model} variant; it trains an MLP only")
        raise unknown_name_error("preset", preset, valid)
    return replace(PRESETS[(preset, model)])


@dataclass
class MnistData:
    """Images scaled to [0, 1] as float32, shaped for the model, with class labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_images: np.ndarray = field(repr=False)  # (N, 28, 28) uint8, for the misclassified grid


def load_data(cfg: MnistConfig) -> MnistData:
    """Load the dataset, carve the validation split and shape the images for `cfg.model`."""
    x, y = load_mnist(cfg.dataset, "train", cfg.data_dir)
    x_test, y_test = load_mnist(cfg.dataset, "test", cfg.data_dir)
    x_train, y_train, x_val, y_val = train_val_split(x, y, cfg.val_size, seed=SPLIT_SEED)
    if cfg.train_subset:
        if cfg.train_subset > len(x_train):
            raise BplabError(f"invalid train_subset {cfg.train_subset}: the train split has only "
                             f"{len(x_train)} images")
        keep = np.random.default_rng(SPLIT_SEED).permutation(len(x_train))[: cfg.train_subset]
        x_train, y_train = x_train[np.sort(keep)], y_train[np.sort(keep)]
    if cfg.test_subset:
        x_test, y_test = x_test[: cfg.test_subset], y_test[: cfg.test_subset]

    shape = (1, 28, 28) if cfg.model == "lenet" else (28 * 28,)

    def prepare(images):
        return (images.reshape(len(images), *shape) / np.float32(255)).astype(np.float32)

    return MnistData(prepare(x_train), y_train, prepare(x_val), y_val, prepare(x_test), y_test,
                     test_images=x_test)


def build_lenet5(activation: str = "relu", rng: np.random.Generator | None = None) -> Sequential:
    """Build LeNet-5 for (N, 1, 28, 28) inputs: two 5x5 conv + 2x2 max-pool stages, 3 Linear.

    Conv(1->6, pad 2) -> pool -> Conv(6->16) -> pool gives (N, 16, 5, 5); then 400-120-84-10.
    Max pooling and ReLU replace the original's subsampling and tanh; 61,706 parameters.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    return Sequential([
        Conv2d(1, 6, 5, padding=2, rng=rng), get_activation(activation), MaxPool2d(2),
        Conv2d(6, 16, 5, rng=rng), get_activation(activation), MaxPool2d(2),
        Flatten(),  # (N, 16 * 5 * 5)
        Linear(400, 120, rng=rng), get_activation(activation),
        Linear(120, 84, rng=rng), get_activation(activation),
        Linear(84, 10, rng=rng),
    ])


def build_model(cfg: MnistConfig) -> Sequential:
    """Build the network that `cfg` describes, with weights drawn from `cfg.seed`."""
    rng = np.random.default_rng(cfg.seed)
    if cfg.model == "lenet":
        return build_lenet5(cfg.activation, rng)
    if cfg.model != "mlp":
        raise unknown_name_error("model", cfg.model, MODELS)
    return build_mlp((28 * 28, *cfg.hidden, 10), activation=cfg.activation, init=cfg.init,
                     dropout=cfg.dropout, rng=rng)


def train(cfg: MnistConfig, data: MnistData, callbacks=(), progress: bool = False):
    """Train the network of `cfg` on `data`; return ``(net, history, test_metrics)``.

    `test_metrics` has test_loss and test_accuracy, computed once after training.
    """
    net = build_model(cfg)
    batch_size = cfg.batch_size or len(data.x_train)
    schedule = get_schedule(cfg.schedule, cfg.lr, cfg.epochs)
    history = fit(
        net, data.x_train, data.y_train, optimizer=cfg.optimizer, lr=cfg.lr, epochs=cfg.epochs,
        batch_size=batch_size, l2=cfg.l2, val_data=(data.x_val, data.y_val), schedule=schedule,
        seed=cfg.seed, callbacks=callbacks, progress=progress,
    )
    test_loss, test_accuracy = evaluate(net, get_loss("cross_entropy"), data.x_test, data.y_test)
    return net, history, {"test_loss": test_loss, "test_accuracy": test_accuracy}


def predict(net: Sequential, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Return predicted class indices of shape (N,) in evaluation mode."""
    net.eval()
    return np.concatenate([np.argmax(net.forward(x[i:i + batch_size]), axis=1)
                           for i in range(0, len(x), batch_size)])


def run_mnist(cfg: MnistConfig, out=None, progress: bool = True) -> dict:
    """Train one network, write the run folder and return the summary dict."""
    data = load_data(cfg)
    run_dir = make_run_dir("mnist", out)
    write_json(run_dir / "config.json", to_dict(cfg))
    metrics = MetricsLog(run_dir / "metrics.jsonl")

    def log_epoch(record, _net):
        metrics.append(record)
        logger.info("epoch %d  loss %.4f  val_accuracy %.4f (higher is better)  %.1f s",
                    record["epoch"], record["loss"], record["val_accuracy"], record["seconds"])

    start = time.perf_counter()
    net, history, test = train(cfg, data, callbacks=[log_epoch], progress=progress)
    last = history.records[-1]
    summary = {
        "experiment": "mnist", "preset": cfg.preset, "model": cfg.model, "dataset": cfg.dataset,
        **test, "val_accuracy": last["val_accuracy"], "val_loss": last["val_loss"],
        "train_accuracy": last["train_accuracy"], "epochs": len(history.records),
        "parameters": net.num_parameters(), "train_seconds": round(history.seconds, 2),
        "seconds": round(time.perf_counter() - start, 2), "run_dir": str(run_dir),
    }
    save_network(net, run_dir / "model", metadata={"experiment": "mnist", "dataset": cfg.dataset,
                                                   "classes": list(CLASS_NAMES[cfg.dataset])})
    write_figures(run_dir, net, data, history.records, cfg)
    write_json(run_dir / "summary.json", summary)
    return summary


def write_figures(run_dir: Path, net: Sequential, data: MnistData, records, cfg) -> None:
    """Write curves.png, confusion.png and misclassified.png for a trained network."""
    names = CLASS_NAMES[cfg.dataset]
    pred = predict(net, data.x_test)
    cm = np.bincount(data.y_test * 10 + pred, minlength=100).reshape(10, 10)
    accuracy = float(np.mean(pred == data.y_test))
    save_figure(plot_curves(records), run_dir / "curves.png")
    save_figure(plot_confusion_matrix(cm, names, title=f"{cfg.dataset} test, {cfg.model}: "
                                      f"accuracy {accuracy:.4f}"), run_dir / "confusion.png")
    wrong = np.flatnonzero(pred != data.y_test)[:N_MISCLASSIFIED]
    if len(wrong):
        titles = [f"true {names[data.y_test[i]]}\npred {names[pred[i]]}" for i in wrong]
        save_figure(plot_image_grid(data.test_images[wrong], titles,
                                    title=f"first {len(wrong)} misclassified test images"),
                    run_dir / "misclassified.png")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text}: must be an integer >= 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid value {text}: must be a number > 0")
    return value


def register(subparsers) -> None:
    """Add the ``bplab mnist`` command."""
    parser = subparsers.add_parser(
        "mnist", help="train a NumPy MLP or LeNet-5 on MNIST or Fashion-MNIST",
        description="Train a NumPy MLP or LeNet-5 on MNIST or Fashion-MNIST and write a run "
                    "folder with metrics, curves, a confusion matrix and misclassified digits.",
    )
    parser.add_argument("--preset", choices=sorted({name for name, _ in PRESETS}),
                        default="default",
                        help="starting values: 'course' (784-128-10 ReLU, SGD lr 0.6 on mean "
                             "gradients = 0.01 summed, batch 60, 10 epochs) or 'default' (the "
                             "best MLP of the study; with --model lenet, LeNet-5 for 5 epochs) "
                             "(default: default)")
    parser.add_argument("--model", choices=MODELS, default="mlp", help="network (default: mlp)")
    parser.add_argument("--dataset", choices=sorted(CLASS_NAMES), help="dataset (default: mnist)")
    parser.add_argument("--epochs", type=_positive_int, help="passes over the training split")
    parser.add_argument("--lr", type=_positive_float, help="learning rate (mean gradients)")
    parser.add_argument("--batch-size", type=int, help="images per step; 0 for full batch")
    parser.add_argument("--seed", type=int, help="seed of the weights and the shuffling")
    parser.add_argument("--data-dir", help="folder holding mnist/ and fashion-mnist/ "
                                           "(default: $BPLAB_DATA_DIR or the user cache)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override any config field, e.g. --set hidden=256,128 --set l2=1e-4")
    parser.add_argument("--out", help="run folder to create (default: runs/mnist/<timestamp>)")
    parser.set_defaults(func=_run_command)


def config_from_args(args: argparse.Namespace) -> MnistConfig:
    """Return the preset's config with every option the user gave replacing its value."""
    cfg = preset_config(args.preset, args.model)
    given = {name: getattr(args, name) for name in ("dataset", "epochs", "lr", "batch_size",
                                                    "seed", "data_dir")
             if getattr(args, name, None) is not None}
    if given.get("batch_size", 0) < 0:
        raise BplabError(f"invalid --batch-size {given['batch_size']}: must be >= 0")
    cfg = replace(cfg, **given)
    overrides = parse_set_options(args.set)
    if "model" in overrides or "preset" in overrides:
        raise BplabError("set the model and the preset with --model and --preset, not --set")
    return apply_overrides(cfg, overrides)


def _run_command(args: argparse.Namespace) -> int:
    summary = run_mnist(config_from_args(args), out=args.out)
    print(f"test accuracy {summary['test_accuracy']:.4f} after {summary['epochs']} epochs "
          f"({summary['train_seconds']:.1f} s training); run folder: {summary['run_dir']}")
    return 0
