"""Benchmarks for the PyTorch zoo: seconds per epoch per model, and the trainer's overhead.

    python bench/zoo.py speed --models lenet5,resnet8 --images 2000 --threads 1
    python bench/zoo.py overhead --model lenet5 --images 8000 --repeats 3 --threads 1

`speed` trains each model for one pass over `--images` random images of the model's input shape
and extrapolates to a full epoch of `--epoch-images` (55,000 = MNIST's training split less 5,000
for validation). `overhead` times the same model, data and optimizer steps through a bare loop and
through `Trainer` with its file-writing callbacks, alternating the two to even out machine load.
Accuracy targets are measured with `bplab train` itself; docs/results_zoo.md lists the commands.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from bplab.models import count_parameters, create_model, default_input
from bplab.training.callbacks import Checkpointer, EpochLogger, MetricsWriter, ProgressBar
from bplab.training.loop import Trainer


def random_loader(n: int, in_chans: int, img_size: int, batch_size: int, seed: int = 0):
    """Return a shuffling DataLoader over `n` random images with 10 classes."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_chans, img_size, img_size, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    dataset = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(seed))


def time_one_pass(model_name: str, images: int, batch_size: int, in_chans: int | None,
                  img_size: int | None) -> tuple[float, int]:
    """Return (seconds for one training pass over `images` images, parameter count)."""
    default_chans, default_size = default_input(model_name)
    in_chans, img_size = in_chans or default_chans, img_size or default_size
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, in_chans=in_chans, img_size=img_size)
    loader = random_loader(images, in_chans, img_size, batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = Trainer(model, optimizer, nn.CrossEntropyLoss(), loader, monitor="train_loss",
                      max_epochs=1)
    start = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - start, count_parameters(model)


def cmd_speed(args) -> None:
    """Print seconds per epoch for each model, extrapolated from a pass over `--images`."""
    rows = []
    for name in args.models.split(","):
        seconds, params = time_one_pass(name, args.images, args.batch_size, args.in_chans,
                                        args.img_size)
        per_epoch = seconds * args.epoch_images / args.images
        rows.append({"model": name, "params": params, "images": args.images,
                     "seconds": round(seconds, 2), "seconds_per_epoch": round(per_epoch, 1)})
        print(f"{name:14s} {params:>11,} params  {seconds:6.2f} s for {args.images} images  "
              f"-> {per_epoch:7.1f} s per {args.epoch_images}-image epoch", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


def bare_loop(model, optimizer, loader, loss_fn) -> None:
    """Run one epoch of the plain PyTorch loop that the trainer is compared against."""
    model.train()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def cmd_overhead(args) -> None:
    """Time bare loop and Trainer epochs alternately; print the median overhead."""
    in_chans, img_size = default_input(args.model)
    loader = random_loader(args.images, in_chans, img_size, args.batch_size)
    loss_fn = nn.CrossEntropyLoss()
    bare, trained = [], []
    with tempfile.TemporaryDirectory() as run_dir:
        for repeat in range(args.repeats):
            torch.manual_seed(repeat)
            model = create_model(args.model, in_chans=in_chans, img_size=img_size)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            start = time.perf_counter()
            bare_loop(model, optimizer, loader, loss_fn)
            bare.append(time.perf_counter() - start)

            torch.manual_seed(repeat)
            model = create_model(args.model, in_chans=in_chans, img_size=img_size)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            callbacks = [ProgressBar(disable=False), EpochLogger(), MetricsWriter(run_dir),
                         Checkpointer(run_dir)]
            trainer = Trainer(model, optimizer, loss_fn, loader, monitor="train_loss",
                              max_epochs=1, callbacks=callbacks,
                              batch_metric_fn=lambda logits, y: (logits.argmax(1) == y)
                              .float().mean().item())
            start = time.perf_counter()
            trainer.fit()
            trained.append(time.perf_counter() - start)
            print(f"repeat {repeat + 1}: bare {bare[-1]:.2f} s, trainer {trained[-1]:.2f} s",
                  flush=True)
    bare_median = sorted(bare)[len(bare) // 2]
    trainer_median = sorted(trained)[len(trained) // 2]
    overhead = 100 * (trainer_median / bare_median - 1)
    print(f"{args.model}, {args.images} images, batch {args.batch_size}: median bare "
          f"{bare_median:.2f} s, trainer {trainer_median:.2f} s, overhead {overhead:+.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default: torch's choice)")
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed", help="seconds per epoch for each model")
    speed.add_argument("--models", default="lenet5,vgg_course,resnet_course,resnet8,resnet14,"
                                           "vit_course,vit_tiny",
                       help="comma-separated model names")
    speed.add_argument("--images", type=int, default=2000, help="images to time (default 2000)")
    speed.add_argument("--epoch-images", type=int, default=55000,
                       help="images per epoch to extrapolate to (default 55000)")
    speed.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    speed.add_argument("--in-chans", type=int, help="input channels (default: the model's)")
    speed.add_argument("--img-size", type=int, help="image size (default: the model's)")
    speed.add_argument("--json", help="also write the rows to this JSON file")
    speed.set_defaults(func=cmd_speed)
    overhead = sub.add_parser("overhead", help="Trainer against a bare loop")
    overhead.add_argument("--model", default="lenet5", help="model (default lenet5)")
    overhead.add_argument("--images", type=int, default=8000, help="images per epoch")
    overhead.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    overhead.add_argument("--repeats", type=int, default=3, help="timed pairs (default 3)")
    overhead.set_defaults(func=cmd_overhead)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    main()
