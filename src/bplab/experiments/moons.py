"""The two-moons experiment: train a BP network, then draw its decision boundary.

``bplab moons`` trains one network and writes a run folder; ``bplab demo`` runs the default
preset. The ``course`` preset repeats the classic course exercise with its flaws fixed.

Converting the course's summed gradients to mean gradients: the course updates
``W -= lr_sum * (sum_i g_i + lam_sum * W)`` over N = 70 training points. Dividing the bracket
by N gives ``W -= (lr_sum * N) * (mean_i g_i + (lam_sum / N) * W)``, so the same steps come from
a mean-gradient learning rate ``0.03 * 70 = 2.1`` and an L2 coefficient ``0.005 / 70 = 7.14e-5``
(bplab's L2 term is ``l2 / 2 * sum(W ** 2)``, whose gradient is ``l2 * W``).
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass, replace

import numpy as np

from bplab.config import to_dict
from bplab.data.moons import load_moons
from bplab.engine.activations import ACTIVATIONS
from bplab.engine.init import INITIALIZERS
from bplab.engine.io import save_network
from bplab.engine.losses import get_loss
from bplab.engine.network import Sequential, build_mlp
from bplab.engine.optim import OPTIMIZERS
from bplab.engine.trainer import evaluate, fit
from bplab.errors import BplabError
from bplab.report import moons_plots
from bplab.report.html import write_html_report
from bplab.report.plots import plot_curves, save_figure
from bplab.runs import MetricsLog, make_run_dir, write_json

logger = logging.getLogger(__name__)

COURSE_N_TRAIN = 70
COURSE_LR_SUMMED = 0.03
COURSE_L2_SUMMED = 0.005


@dataclass
class MoonsConfig:
    """Settings of one two-moons run."""

    preset: str = "default"  # the preset these values started from
    n: int = 1000  # points drawn in total
    noise: float = 0.2  # std of the Gaussian noise on the points
    seed: int = 0  # seeds the data, the split, the weights and the shuffling
    val_fraction: float = 0.2  # share of points for validation (0: none)
    test_fraction: float = 0.2  # share of points for the final test
    hidden: tuple[int, ...] = (16, 16)  # hidden layer widths
    activation: str = "tanh"  # hidden activation
    init: str = "xavier_normal"  # weight initializer
    optimizer: str = "adam"  # optimizer name
    lr: float = 0.01  # learning rate for mean (not summed) gradients
    l2: float = 0.0  # coefficient of l2 / 2 * sum(W ** 2)
    epochs: int = 300  # passes over the training split
    batch_size: int = 32  # samples per step; 0 means full batch
    patience: int = 50  # early stopping on val loss, keeping the best weights (0: off)
    gif_frames: int = 40  # frames of training.gif (0: no GIF)


PRESETS = {
    "default": MoonsConfig(),
    "course": MoonsConfig(
        preset="course", n=100, noise=0.1, val_fraction=0.0, test_fraction=0.3, hidden=(7,),
        activation="tanh", init="xavier_uniform", optimizer="sgd",
        lr=COURSE_LR_SUMMED * COURSE_N_TRAIN, l2=COURSE_L2_SUMMED / COURSE_N_TRAIN, epochs=100,
        batch_size=0, patience=0,
    ),
}


def run_moons(cfg: MoonsConfig, out=None, progress: bool = True) -> dict:
    """Train one network on two moons, write the run folder and return the summary dict."""
    data = load_moons(cfg.n, cfg.noise, cfg.seed, cfg.val_fraction, cfg.test_fraction)
    rng = np.random.default_rng(cfg.seed)
    net = build_mlp((2, *cfg.hidden, 2), activation=cfg.activation, init=cfg.init, rng=rng)
    run_dir = make_run_dir("moons", out)
    write_json(run_dir / "config.json", to_dict(cfg))
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    snapshots = _BoundarySnapshots(data, cfg.epochs, cfg.gif_frames)
    has_val = len(data.x_val) > 0
    if cfg.patience and not has_val:
        logger.warning("patience %d is ignored: early stopping needs a validation split, and "
                       "val_fraction is 0", cfg.patience)

    try:
        history = fit(
            net, data.x_train, data.y_train, optimizer=cfg.optimizer, lr=cfg.lr,
            epochs=cfg.epochs, batch_size=cfg.batch_size or len(data.x_train), l2=cfg.l2,
            val_data=(data.x_val, data.y_val) if has_val else None,
            patience=cfg.patience if (cfg.patience and has_val) else None, seed=cfg.seed,
            callbacks=[lambda record, _: metrics.append(record), snapshots], progress=progress,
        )
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_partial_run_note(run_dir, metrics)) from None
    except BplabError as exc:
        raise BplabError(f"{exc}; {_partial_run_note(run_dir, metrics)}") from None

    loss = get_loss("cross_entropy")
    x = {"train": data.x_train, "val": data.x_val, "test": data.x_test}
    y = {"train": data.y_train, "val": data.y_val, "test": data.y_test}
    summary = {"experiment": "moons", "preset": cfg.preset}
    for split in ("train", "val", "test"):
        if len(x[split]):
            summary[f"{split}_loss"], summary[f"{split}_accuracy"] = evaluate(
                net, loss, x[split].astype(np.float32), y[split])
        else:
            summary[f"{split}_accuracy"] = None
    summary.update(epochs=len(history.records), best_epoch=history.best_epoch,
                   stopped_early=history.stopped_early, seconds=round(history.seconds, 3),
                   parameters=net.num_parameters(), run_dir=str(run_dir))
    save_network(net, run_dir / "model", metadata={"experiment": "moons", "classes": [0, 1]})
    snapshots.add_final(net, history)
    _write_figures(run_dir, net, data, history.records, snapshots, cfg)
    write_json(run_dir / "summary.json", summary)
    write_html_report(run_dir, title=f"two moons, {cfg.preset} preset")
    return summary


def _partial_run_note(run_dir, metrics: MetricsLog) -> str:
    """Say what a run stopped during training left in its folder."""
    epochs = len(metrics.records)
    kept = "config.json and metrics.jsonl" if epochs else "config.json"
    return f"{run_dir} keeps {kept} of the {epochs} finished epochs"


class _BoundarySnapshots:
    """Callback that stores P(class 1) on a mesh at evenly spaced epochs, for the GIF."""

    def __init__(self, data, epochs: int, frames: int):
        points = np.concatenate([data.x_train, data.x_val, data.x_test])
        self.xx, self.yy, grid = moons_plots.make_grid(points, resolution=100)
        self.grid = grid.astype(np.float32)
        count = min(frames, epochs)
        self.epochs = set(np.unique(np.linspace(1, epochs, count).round().astype(int)).tolist()) \
            if count else set()
        self.frames: list[tuple[str, np.ndarray]] = []  # (title, P(class 1) on the mesh)

    def __call__(self, record: dict, net: Sequential) -> None:
        if record["epoch"] in self.epochs:
            self.frames.append((f"epoch {record['epoch']}, loss {record['loss']:.3f}",
                                _prob_class1(net, self.grid, self.xx.shape)))

    def add_final(self, net: Sequential, history) -> None:
        """Add a last frame of the weights training kept, when early stopping restored others."""
        if self.frames and history.best_epoch is not None:
            self.frames.append((f"kept weights of epoch {history.best_epoch}",
                                _prob_class1(net, self.grid, self.xx.shape)))


def _prob_class1(net: Sequential, points: np.ndarray, shape) -> np.ndarray:
    """Return P(class 1) for `points` of shape (M, 2), reshaped to `shape`, in eval mode."""
    was_training = net.training
    net.eval()
    logits = net.forward(points).astype(np.float64)
    net.train(was_training)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return (probs[:, 1] / probs.sum(axis=1)).reshape(shape)


def _write_figures(run_dir, net, data, records, snapshots, cfg) -> None:
    """Write decision_boundary.png, curves.png and (when frames were kept) training.gif."""
    net.eval()
    points = np.concatenate([data.x_train, data.x_val, data.x_test])
    xx, yy, grid = moons_plots.make_grid(points)
    prob = _prob_class1(net, grid.astype(np.float32), xx.shape)
    pred_train = np.argmax(net.forward(data.x_train.astype(np.float32)), axis=1)
    pred_test = np.argmax(net.forward(data.x_test.astype(np.float32)), axis=1)
    test_acc = float(np.mean(pred_test == data.y_test))
    title = (f"{cfg.preset} preset: 2-{'-'.join(map(str, cfg.hidden))}-2 {cfg.activation}, "
             f"test accuracy {test_acc:.3f}")
    save_figure(moons_plots.plot_decision_boundary(
        xx, yy, prob, data.x_train, data.y_train, pred_train, data.x_test, data.y_test, pred_test,
        title=title), run_dir / "decision_boundary.png")
    save_figure(plot_curves(records), run_dir / "curves.png")
    if snapshots.frames:
        figures = (moons_plots.boundary_frame(snapshots.xx, snapshots.yy, prob_frame,
                                              data.x_train, data.y_train, title)
                   for title, prob_frame in snapshots.frames)
        moons_plots.save_gif(figures, run_dir / "training.gif")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"invalid value {text}: must be a finite number >= 0")
    return value


def _integer(text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text}: must be an integer") from None
    if value < low or (high is not None and value > high):
        limits = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise argparse.ArgumentTypeError(f"invalid value {text}: must be an integer {limits}")
    return value


def _positive_int(text: str) -> int:
    return _integer(text, 1)


def _non_negative_int(text: str) -> int:
    return _integer(text, 0)


def _seed(text: str) -> int:
    # scikit-learn's make_moons takes seeds in [0, 2**32 - 1].
    return _integer(text, 0, 2**32 - 1)


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected comma-separated positive widths, e.g. 16,16")
    return sizes


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the moons options; each defaults to the chosen preset's value."""
    activations = sorted(set(ACTIVATIONS) - {"softmax"})
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="starting values: 'course' (100 points, 2-7-2 tanh, full-batch SGD) or "
                             "'default' (1000 points, 2-16-16-2 tanh, Adam) (default: default)")
    parser.add_argument("--n", type=_positive_int, help="number of points")
    parser.add_argument("--noise", type=_non_negative_float, help="std of the noise (>= 0)")
    parser.add_argument("--seed", type=_seed, help="random seed, 0 to 2**32 - 1")
    parser.add_argument("--hidden", type=_hidden_sizes, help="hidden widths, e.g. 16,16")
    parser.add_argument("--activation", choices=activations, help="hidden activation")
    parser.add_argument("--init", choices=sorted(INITIALIZERS), help="weight initializer")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="optimizer")
    parser.add_argument("--lr", type=_non_negative_float, help="learning rate (mean gradients)")
    parser.add_argument("--l2", type=_non_negative_float, help="L2 coefficient")
    parser.add_argument("--epochs", type=_positive_int, help="passes over the training split")
    parser.add_argument("--batch-size", type=_non_negative_int,
                        help="samples per step; 0 for full batch")
    parser.add_argument("--patience", type=_non_negative_int,
                        help="epochs without val-loss improvement before stopping; 0 disables")
    parser.add_argument("--gif-frames", type=_non_negative_int, help="frames in training.gif")
    parser.add_argument("--out", help="run folder to create (default: runs/moons/<timestamp>)")


def config_from_args(args: argparse.Namespace) -> MoonsConfig:
    """Return the preset's config with every option the user gave replacing its value."""
    cfg = PRESETS[args.preset]
    given = {field: getattr(args, field) for field in (
        "n", "noise", "seed", "hidden", "activation", "init", "optimizer", "lr", "l2", "epochs",
        "batch_size", "patience", "gif_frames") if getattr(args, field, None) is not None}
    if given.get("lr") == 0:
        raise BplabError("invalid --lr 0: the learning rate must be positive")
    return replace(cfg, **given)


def _run_command(args: argparse.Namespace) -> int:
    summary = run_moons(config_from_args(args), out=args.out)
    _print_result(summary)
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    summary = run_moons(PRESETS["default"], out=args.out)
    _print_result(summary)
    run_dir = summary["run_dir"]
    print(f"pictures: {run_dir}/decision_boundary.png, {run_dir}/curves.png, "
          f"{run_dir}/training.gif")
    return 0


def _print_result(summary: dict) -> None:
    print(f"test accuracy {summary['test_accuracy']:.4f} after {summary['epochs']} epochs "
          f"({summary['seconds']:.1f} s); run folder: {summary['run_dir']}")


def register(subparsers) -> None:
    """Add the ``moons`` and ``demo`` commands."""
    moons = subparsers.add_parser("moons", help="train a BP network on two moons and draw it")
    _add_arguments(moons)
    moons.set_defaults(func=_run_command)
    demo = subparsers.add_parser("demo", help="run the default two-moons experiment")
    demo.add_argument("--out", help="run folder to create (default: runs/moons/<timestamp>)")
    demo.set_defaults(func=_demo_command)
