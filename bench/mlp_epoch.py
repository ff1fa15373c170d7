"""Time one MNIST training epoch: the bplab NumPy engine against PyTorch (CPU) and scikit-learn.

The workload is 784-128-10 ReLU, float32, batch 128, Adam with lr 1e-3 and no L2, on the 60,000
training images. Contenders run interleaved (a different order each repetition) and the script
reports medians and ratios:

- ``engine``: ``bplab.engine.trainer.fit`` for one epoch (its loss and accuracy bookkeeping included);
- ``lean_numpy``: a single NumPy function with the same maths, as a floor for what NumPy can do;
- ``torch``: a PyTorch loop with the same thread count as NumPy's BLAS;
- ``sklearn``: ``MLPClassifier(max_iter=1)`` on float32 input.

It also measures the training seconds until 97 % test accuracy (checked after every epoch) and one
epoch of LeNet-5 in NumPy and in PyTorch (batch 128, Adam). OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE change OpenBLAS's kernels, so the whole measurement runs in child processes, once
with the environment as it is and once with both variables unset, alternating rounds.

Usage: ``BPLAB_DATA_DIR=../shared/data python bench/mlp_epoch.py [--repeats 5] [--rounds 2]
[--threads N] [--out FILE]``. Results go to ``bench/results/mlp_epoch-<date>.json`` by default.
Multi-threaded BLAS and PyTorch slow down by 10x and more when other processes keep the cores
busy, so the JSON records the load average before and after each child.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
HIDDEN = 128
BATCH_SIZE = 128
LR = 1e-3
TARGET_ACCURACY = 0.97
MAX_EPOCHS_TO_TARGET = 10


def load_data():
    """Return MNIST train and test as float32 in [0, 1], flattened, with int64 labels."""
    from bplab.data.mnist import load_mnist

    x_train, y_train = load_mnist("mnist", "train")
    x_test, y_test = load_mnist("mnist", "test")

    def prepare(images):
        return (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32)

    return prepare(x_train), y_train, prepare(x_test), y_test


# --- contenders: each trains one epoch from fresh weights and returns (seconds, model) ----------


def engine_epoch(x, y, seed):
    """Train one epoch with the bplab engine's `fit`."""
    from bplab.engine.network import build_mlp
    from bplab.engine.trainer import fit

    net = build_mlp((784, HIDDEN, 10), rng=np.random.default_rng(seed))
    start = time.perf_counter()
    fit(net, x, y, optimizer="adam", lr=LR, epochs=1, batch_size=BATCH_SIZE, seed=seed)
    return time.perf_counter() - start, net


def lean_numpy_epoch(x, y, seed):
    """One epoch of the same network and Adam written as one plain NumPy function."""
    rng = np.random.default_rng(seed)
    params = [(rng.standard_normal((784, HIDDEN)) * np.sqrt(2 / 784)).astype(np.float32),
              np.zeros(HIDDEN, np.float32),
              (rng.standard_normal((HIDDEN, 10)) * np.sqrt(2 / HIDDEN)).astype(np.float32),
              np.zeros(10, np.float32)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    start = time.perf_counter()
    order = rng.permutation(len(x))
    for t, i in enumerate(range(0, len(x), BATCH_SIZE), start=1):
        idx = order[i:i + BATCH_SIZE]
        xb, yb = x[idx], y[idx]
        w1, b1, w2, b2 = params
        h = xb @ w1 + b1
        a = np.maximum(h, 0)
        logits = a @ w2 + b2
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        probs[np.arange(len(yb)), yb] -= 1
        grad_logits = probs / len(yb)
        grad_a = grad_logits @ w2.T
        grad_a[h <= 0] = 0
        grads = [xb.T @ grad_a, grad_a.sum(0), a.T @ grad_logits, grad_logits.sum(0)]
        step = LR * np.sqrt(1 - beta2**t) / (1 - beta1**t)
        for p, g, m_i, v_i in zip(params, grads, m, v):
            m_i *= beta1
            m_i += (1 - beta1) * g
            v_i *= beta2
            v_i += (1 - beta2) * g * g
            p -= step * m_i / (np.sqrt(v_i) + eps)
    return time.perf_counter() - start, params


def torch_epoch(x, y, seed, model=None, optimizer=None):
    """Train one epoch in PyTorch on the CPU, summing loss and accuracy as the engine does."""
    import torch

    torch.manual_seed(seed)
    if model is None:
        model = torch.nn.Sequential(torch.nn.Linear(784, HIDDEN), torch.nn.ReLU(),
                                    torch.nn.Linear(HIDDEN, 10))
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    data, target = torch.from_numpy(x), torch.from_numpy(y)
    start = time.perf_counter()
    _torch_loop(torch, model, optimizer, data, target)
    return time.perf_counter() - start, (model, optimizer)


def _torch_loop(torch, model, optimizer, data, target):
    loss_fn = torch.nn.CrossEntropyLoss()
    order = torch.randperm(len(data))
    loss_sum, correct = 0.0, 0
    for i in range(0, len(data), BATCH_SIZE):
        idx = order[i:i + BATCH_SIZE]
        output = model(data[idx])
        loss = loss_fn(output, target[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(idx)
        correct += int((output.argmax(1) == target[idx]).sum())
    return loss_sum, correct


def sklearn_epoch(x, y, seed, model=None):
    """Train one epoch of scikit-learn's MLPClassifier (Adam, no L2) on float32 input."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    if model is None:
        model = MLPClassifier(hidden_layer_sizes=(HIDDEN,), activation="relu", solver="adam",
                              alpha=0.0, batch_size=BATCH_SIZE, learning_rate_init=LR,
                              max_iter=1, shuffle=True, random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.partial_fit(x, y, classes=np.arange(10))
    return time.perf_counter() - start, model


EPOCH_CONTENDERS = {"engine": engine_epoch, "lean_numpy": lean_numpy_epoch,
                    "torch": torch_epoch, "sklearn": sklearn_epoch}


# --- seconds to 97 % test accuracy ---------------------------------------------------------------


def engine_time_to_target(x, y, x_test, y_test, seed):
    """Train with `fit` until the test accuracy after an epoch reaches the target."""
    from bplab.engine.network import build_mlp
    from bplab.engine.trainer import fit

    net = build_mlp((784, HIDDEN, 10), rng=np.random.default_rng(seed))
    reached = {}

    def check(record, net):
        if "epoch" not in reached and _accuracy(net.forward(x_test), y_test) >= TARGET_ACCURACY:
            reached["epoch"] = record["epoch"]
            reached["seconds"] = sum(r["seconds"] for r in history_records)

    history_records = []
    fit(net, x, y, optimizer="adam", lr=LR, epochs=MAX_EPOCHS_TO_TARGET, batch_size=BATCH_SIZE,
        seed=seed, callbacks=[lambda record, n: (history_records.append(record), check(record, n))])
    return reached


def torch_time_to_target(x, y, x_test, y_test, seed):
    """Train the PyTorch MLP epoch by epoch until the test accuracy reaches the target."""
    import torch

    seconds, model_state = 0.0, None
    data_test = torch.from_numpy(x_test)
    for epoch in range(1, MAX_EPOCHS_TO_TARGET + 1):
        model, optimizer = model_state or (None, None)
        elapsed, model_state = torch_epoch(x, y, seed + epoch, model, optimizer)
        seconds += elapsed
        with torch.no_grad():
            if _accuracy(model_state[0](data_test).numpy(), y_test) >= TARGET_ACCURACY:
                return {"epoch": epoch, "seconds": seconds}
    return {}


def sklearn_time_to_target(x, y, x_test, y_test, seed):
    """Train MLPClassifier one partial_fit epoch at a time until the test accuracy reaches it."""
    seconds, model = 0.0, None
    for epoch in range(1, MAX_EPOCHS_TO_TARGET + 1):
        elapsed, model = sklearn_epoch(x, y, seed, model)
        seconds += elapsed
        if model.score(x_test, y_test) >= TARGET_ACCURACY:
            return {"epoch": epoch, "seconds": seconds}
    return {}


def _accuracy(logits, y):
    return float(np.mean(np.argmax(logits, axis=1) == y))


# --- LeNet-5 ----------------------------------------------------------------------------------


def numpy_lenet_epoch(x_images, y, seed):
    """Train LeNet-5 for one epoch with the NumPy engine (Adam, batch 128)."""
    from bplab.engine.trainer import fit
    from bplab.experiments.mnist_numpy import build_lenet5

    net = build_lenet5(rng=np.random.default_rng(seed))
    start = time.perf_counter()
    fit(net, x_images, y, optimizer="adam", lr=LR, epochs=1, batch_size=BATCH_SIZE, seed=seed)
    return time.perf_counter() - start, net


def torch_lenet_epoch(x_images, y, seed):
    """Train the same LeNet-5 for one epoch in PyTorch on the CPU."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    data, target = torch.from_numpy(x_images), torch.from_numpy(y)
    start = time.perf_counter()
    _torch_loop(torch, model, optimizer, data, target)
    return time.perf_counter() - start, model


# --- one child process: all measurements under one environment -------------------------------


def blas_info() -> list[dict]:
    """Return threadpoolctl's description of the loaded BLAS libraries."""
    from threadpoolctl import threadpool_info

    return [{k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for info in threadpool_info()]


def run_child(repeats: int, lenet_repeats: int) -> dict:
    """Measure every contender under the current environment; return the raw timings."""
    import torch

    load_before = list(os.getloadavg())  # other processes on the machine skew the timings
    blas = blas_info()
    threads = max(info["num_threads"] or 1 for info in blas) if blas else os.cpu_count()
    torch.set_num_threads(threads)
    x, y, x_test, y_test = load_data()
    timings: dict[str, list[float]] = {name: [] for name in EPOCH_CONTENDERS}
    names = list(EPOCH_CONTENDERS)
    for name in names:  # warm-up: imports, BLAS buffers, first-call costs
        EPOCH_CONTENDERS[name](x[:2048], y[:2048], 0)
    for rep in range(repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            seconds, _ = EPOCH_CONTENDERS[name](x, y, rep)
            timings[name].append(seconds)

    to_target = {
        "engine": engine_time_to_target(x, y, x_test, y_test, 0),
        "torch": torch_time_to_target(x, y, x_test, y_test, 0),
        "sklearn": sklearn_time_to_target(x, y, x_test, y_test, 0),
    }

    images = x.reshape(-1, 1, 28, 28)
    lenet = {"numpy_lenet": [], "torch_lenet": []}
    numpy_lenet_epoch(images[:1024], y[:1024], 0)
    torch_lenet_epoch(images[:1024], y[:1024], 0)
    for rep in range(lenet_repeats):
        pair = [("numpy_lenet", numpy_lenet_epoch), ("torch_lenet", torch_lenet_epoch)]
        for name, run in (pair if rep % 2 == 0 else pair[::-1]):
            lenet[name].append(run(images, y, rep)[0])

    return {"epoch_seconds": timings, "lenet_epoch_seconds": lenet, "to_97_percent": to_target,
            "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
            "threads": threads, "blas": blas, "torch_threads": torch.get_num_threads(),
            "environment": {k: os.environ.get(k) for k in OPENBLAS_VARIABLES}}


# --- parent: rounds of children, medians, ratios, JSON ---------------------------------------


def child_environment(mode: str, threads: int | None) -> dict:
    """Return the child's environment: OpenBLAS variables as-is or unset, and the thread count."""
    env = dict(os.environ)
    if threads:
        for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[key] = str(threads)
    if mode == "unset":
        for key in OPENBLAS_VARIABLES:
            env.pop(key, None)
    return env


def summarize(results: list[dict]) -> dict:
    """Pool the rounds of one environment mode into medians and ratios."""
    epoch = {name: [t for r in results for t in r["epoch_seconds"][name]]
             for name in EPOCH_CONTENDERS}
    lenet = {name: [t for r in results for t in r["lenet_epoch_seconds"][name]]
             for name in ("numpy_lenet", "torch_lenet")}
    median = {name: float(np.median(times)) for name, times in {**epoch, **lenet}.items()}
    return {
        "median_seconds": median,
        "all_seconds": {**epoch, **lenet},
        "ratios": {
            "engine_over_torch": median["engine"] / median["torch"],
            "sklearn_over_engine": median["sklearn"] / median["engine"],
            "engine_over_lean_numpy": median["engine"] / median["lean_numpy"],
            "numpy_lenet_over_torch_lenet": median["numpy_lenet"] / median["torch_lenet"],
        },
        "to_97_percent": [r["to_97_percent"] for r in results],
        "load_averages": [(r["load_average_before"], r["load_average_after"]) for r in results],
        "threads": results[0]["threads"], "torch_threads": results[0]["torch_threads"],
        "blas": results[0]["blas"], "environment": results[0]["environment"],
    }


def machine_description() -> dict:
    import sklearn
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch.__version__, "sklearn": sklearn.__version__,
            "platform": platform.platform()}


def markdown_table(report: dict) -> str:
    """Return the medians and ratios of both environment modes as a Markdown table."""
    modes = report["modes"]
    header = "| measurement | " + " | ".join(f"OpenBLAS variables {m}" for m in modes) + " |"
    lines = [header, "|---" * (len(modes) + 1) + "|"]
    rows = [("engine epoch (s)", "median_seconds", "engine", "{:.3f}"),
            ("lean NumPy loop epoch (s)", "median_seconds", "lean_numpy", "{:.3f}"),
            ("PyTorch epoch (s)", "median_seconds", "torch", "{:.3f}"),
            ("scikit-learn epoch (s)", "median_seconds", "sklearn", "{:.3f}"),
            ("engine / PyTorch (target <= 0.8)", "ratios", "engine_over_torch", "{:.2f}"),
            ("scikit-learn / engine (target >= 1.5)", "ratios", "sklearn_over_engine", "{:.2f}"),
            ("engine / lean NumPy loop", "ratios", "engine_over_lean_numpy", "{:.2f}"),
            ("NumPy LeNet-5 epoch (s)", "median_seconds", "numpy_lenet", "{:.1f}"),
            ("PyTorch LeNet-5 epoch (s)", "median_seconds", "torch_lenet", "{:.1f}"),
            ("NumPy LeNet / PyTorch LeNet (target <= 3)", "ratios",
             "numpy_lenet_over_torch_lenet", "{:.2f}")]
    for label, group, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt.format(modes[m][group][key]) for m in modes)
                     + " |")
    for framework in ("engine", "torch", "sklearn"):
        cells = []
        for m in modes:
            reached = [r[framework] for r in modes[m]["to_97_percent"]]
            cells.append(", ".join(f"{r['seconds']:.1f} s (epoch {r['epoch']})" if r else
                                   f"not within {MAX_EPOCHS_TO_TARGET} epochs" for r in reached))
        lines.append(f"| {framework}: training seconds to 97 % test accuracy, per round | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="epochs per contender per round")
    parser.add_argument("--lenet-repeats", type=int, default=2,
                        help="LeNet epochs per framework per round")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds per environment mode, alternating as-is and unset")
    parser.add_argument("--out", help="JSON file to write (default: bench/results/mlp_epoch-DATE.json)")
    parser.add_argument("--threads", type=int,
                        help="BLAS and PyTorch threads (default: BLAS's own default, usually "
                             "one per core)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        json.dump(run_child(args.repeats, args.lenet_repeats), sys.stdout)
        return 0

    per_mode: dict[str, list[dict]] = {"as_is": [], "unset": []}
    for round_index in range(args.rounds):
        for mode in ("as_is", "unset") if round_index % 2 == 0 else ("unset", "as_is"):
            print(f"round {round_index + 1}/{args.rounds}, OpenBLAS variables {mode}", file=sys.stderr)
            done = subprocess.run(
                [sys.executable, __file__, "--child", "--repeats", str(args.repeats),
                 "--lenet-repeats", str(args.lenet_repeats)],
                env=child_environment(mode, args.threads), capture_output=True, text=True, check=True)
            per_mode[mode].append(json.loads(done.stdout))

    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": machine_description(),
              "workload": {"network": f"784-{HIDDEN}-10 ReLU", "dtype": "float32",
                           "batch_size": BATCH_SIZE, "optimizer": f"Adam lr {LR}",
                           "train_images": 60000, "repeats": args.repeats, "rounds": args.rounds,
                           "threads_requested": args.threads},
              "modes": {mode: summarize(results) for mode, results in per_mode.items()}}
    out = Path(args.out) if args.out else (
        Path(__file__).parent / "results" / f"mlp_epoch-{time.strftime('%Y%m%d')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for mode, summary in report["modes"].items():
        med, ratios = summary["median_seconds"], summary["ratios"]
        print(f"[{mode}] " + "  ".join(f"{k} {v:.3f}s" for k, v in med.items()))
        print(f"[{mode}] " + "  ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    print(markdown_table(report))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
