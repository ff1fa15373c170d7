"""PyTorch commands: `bplab train`, `eval`, `predict`, `export` and `course task3`.

torch is imported inside the command functions, so `bplab --help` works without it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bplab.errors import BplabError

log = logging.getLogger(__name__)

# Flags of `bplab train` and the config keys they set; None means "keep the config's default".
_TRAIN_FLAGS = {
    "model": "model",
    "dataset": "data.dataset",
    "data_dir": "data.data_dir",
    "val_size": "data.val_size",
    "train_subset": "data.train_subset",
    "test_subset": "data.test_subset",
    "img_size": "data.img_size",
    "augment": "data.augment",
    "batch_size": "data.batch_size",
    "num_workers": "data.num_workers",
    "optimizer": "optim.name",
    "lr": "optim.lr",
    "momentum": "optim.momentum",
    "weight_decay": "optim.weight_decay",
    "schedule": "schedule.name",
    "warmup_epochs": "schedule.warmup_epochs",
    "epochs": "epochs",
    "stop_after": "stop_after",
    "label_smoothing": "label_smoothing",
    "grad_clip": "grad_clip",
    "early_stop": "early_stop",
    "seed": "seed",
    "device": "device",
    "threads": "threads",
}
# Keys that `--resume` may change; the others must stay as the run started.
_RESUME_KEYS = {"epochs", "stop_after", "device", "threads", "data.num_workers", "data.data_dir"}


def register(subparsers) -> None:
    """Add the train, eval, predict, export and course commands."""
    # The defaults in the help text are those of TrainConfig (not imported here: it needs torch).
    train = subparsers.add_parser(
        "train", help="train an image classifier (PyTorch; also under torchrun)",
        description="Train a model from the zoo on MNIST, Fashion-MNIST, CIFAR-10 or a "
                    "class-per-folder image folder. Launch with `torchrun --nproc_per_node N "
                    "-m bplab train ...` for data-parallel training.",
    )
    add = train.add_argument
    add("--model", help="model name, see `bplab train --list-models` (default lenet5)")
    add("--list-models", action="store_true", help="print the registered models and exit")
    add("--dataset", help="mnist, fashion-mnist, cifar10 or a folder of class subfolders "
                          "(default mnist)")
    add("--data-dir", help="data root (default $BPLAB_DATA_DIR or the user cache)")
    add("--val-size", type=int, help="validation images (default 5000)")
    add("--train-subset", type=int, help="train on this many images only (default all)")
    add("--test-subset", type=int, help="score this many test images only (default all)")
    add("--img-size", type=int, help="resize folder images to this many pixels per side")
    add("--augment", choices=["auto", "none", "digits", "photos"],
        help="training augmentation (default auto: digits for grayscale, photos for RGB)")
    add("--batch-size", type=int, help="images per step and process "
                                       "(default 128)")
    add("--num-workers", type=int, help="DataLoader worker processes (default 0)")
    add("--optimizer", choices=["sgd", "adam", "adamw"],
        help="optimizer (default adamw)")
    add("--lr", type=float, help="peak learning rate (default 0.001)")
    add("--momentum", type=float, help="SGD momentum (default 0.9)")
    add("--weight-decay", type=float,
        help="weight decay (default 0.05)")
    add("--schedule", choices=["constant", "cosine", "step", "onecycle"],
        help="learning-rate schedule (default cosine)")
    add("--warmup-epochs", type=float, help="linear warm-up length in epochs (default 0)")
    add("--epochs", type=int, help="epochs (default 10)")
    add("--stop-after", type=int,
        help="end this invocation after N epochs; continue with --resume (default off)")
    add("--label-smoothing", type=float, help="label smoothing (default 0)")
    add("--grad-clip", type=float, help="clip the gradient norm to this value (default off)")
    add("--early-stop", type=int,
        help="stop after N epochs without a better val accuracy (default off)")
    add("--seed", type=int, help="random seed (default 0)")
    add("--deterministic", action="store_true", help="use deterministic kernels")
    add("--device", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    add("--threads", type=int,
        help="CPU threads for torch (default: torch's choice; 1 is faster on a busy machine)")
    add("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    add("--model-arg", action="append", metavar="KEY=VALUE",
        help="model constructor option, e.g. depth=4 (repeatable)")
    add("--set", action="append", metavar="KEY=VALUE",
        help="override any config key, e.g. schedule.min_lr_ratio=0.01 (repeatable)")
    add("--out", help="run folder (default runs/train/<timestamp>); must not exist or be empty")
    add("--resume", metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last.pt (only --epochs, --stop-after, "
             "--device, --threads, --num-workers and --data-dir may change)")
    train.set_defaults(func=cmd_train)

    evaluate = subparsers.add_parser("eval", help="score a trained run on its test split")
    evaluate.add_argument("run_dir", help="run folder written by `bplab train`")
    evaluate.add_argument("--checkpoint", default="best.pt", help="file in RUN_DIR (default best.pt)")
    evaluate.add_argument("--data-dir", help="data root (default: the one the run used)")
    evaluate.add_argument("--device", default="auto", help="device (default auto)")
    evaluate.add_argument("--output", help="also write the report as JSON to this new file")
    evaluate.set_defaults(func=cmd_eval)

    predict = subparsers.add_parser("predict", help="classify image files with a trained run")
    predict.add_argument("run_dir", help="run folder written by `bplab train`")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    predict.add_argument("--checkpoint", default="best.pt", help="file in RUN_DIR (default best.pt)")
    predict.add_argument("--top", type=int, default=3, help="classes to print (default 3)")
    predict.add_argument("--resize", action="store_true",
                         help="resize images whose size differs from the model's input")
    predict.add_argument("--invert", action="store_true",
                         help="invert grayscale images (dark digit on white paper -> MNIST style)")
    predict.set_defaults(func=cmd_predict)

    export = subparsers.add_parser("export", help="export a trained run to ONNX or torch.export")
    export.add_argument("run_dir", help="run folder written by `bplab train`")
    export.add_argument("--format", choices=["onnx", "pt2"], default="onnx",
                        help="onnx, or pt2 (a torch.export program for torch.export.load); "
                             "default onnx")
    export.add_argument("--checkpoint", default="best.pt", help="file in RUN_DIR (default best.pt)")
    export.add_argument("--output", help="output file (default RUN_DIR/model.onnx or model.pt2)")
    export.set_defaults(func=cmd_export)

    course = subparsers.add_parser("course", help="rerun a course exercise with bplab")
    course.add_argument("task", choices=["task3"],
                        help="task3: LeNet, VGG, ResNet and ViT on MNIST (course vs bplab settings)")
    course.add_argument("--epochs", type=int, default=10, help="epochs per model (default 10)")
    course.add_argument("--train-subset", type=int, default=0,
                        help="train on this many images only (default all)")
    course.add_argument("--only", choices=["course", "bplab"],
                        help="train only the course's settings or only bplab's presets")
    course.add_argument("--models", help="comma-separated subset of the models to train")
    course.add_argument("--data-dir", help="data root (default $BPLAB_DATA_DIR or the user cache)")
    course.add_argument("--device", default="auto", help="device (default auto)")
    course.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (default: torch's choice)")
    course.add_argument("--out", help="folder for the runs and the table (default "
                                      "runs/course-task3/<timestamp>)")
    course.set_defaults(func=cmd_course)


# --- train ---------------------------------------------------------------------------------
def config_from_args(args: argparse.Namespace):
    """Build the TrainConfig from the flags, `--model-arg` and `--set` options."""
    from bplab.config import apply_overrides, parse_set_options
    from bplab.training.recipe import TrainConfig, parse_model_args

    overrides = {key: getattr(args, flag) for flag, key in _TRAIN_FLAGS.items()
                 if getattr(args, flag, None) is not None}
    if args.deterministic:
        overrides["deterministic"] = True
    if args.no_amp:
        overrides["amp"] = False
    overrides.update(parse_set_options(args.set))
    cfg = apply_overrides(TrainConfig(), overrides)
    cfg.model_args = {**cfg.model_args, **parse_model_args(args.model_arg)}
    return cfg, overrides


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model (`bplab train`)."""
    from bplab.models import create_model, default_input, describe, list_models

    if args.list_models:
        for name in list_models():
            in_chans, img_size = default_input(name)
            model = create_model(name, num_classes=10, in_chans=in_chans, img_size=img_size)
            print(f"{describe(model, name)} (for {in_chans}x{img_size}x{img_size} input)")
        return 0
    if args.model is not None and args.model not in list_models():
        from bplab.errors import unknown_name_error

        raise unknown_name_error("model", args.model, list_models())

    from bplab.config import apply_overrides, to_dict
    from bplab.runs import make_run_dir, write_json
    from bplab.training.checkpoint import load_checkpoint
    from bplab.training.distributed import broadcast_object, cleanup_distributed, init_distributed
    from bplab.training.recipe import config_from_dict, run_training

    cfg, overrides = config_from_args(args)
    resume = None
    if args.resume and args.out:
        raise BplabError("--resume continues RUN_DIR in place; drop --out")
    if args.resume:
        run_dir = Path(args.resume)
        resume = load_checkpoint(run_dir / "last.pt")
        fixed = sorted(set(overrides) - _RESUME_KEYS) + (["model_arg"] if args.model_arg else [])
        if fixed:
            raise BplabError(f"--resume continues the saved config; these cannot change: "
                             f"{', '.join(fixed)}")
        cfg = apply_overrides(config_from_dict(resume["config"]), overrides)
        if resume["state"]["epoch"] >= cfg.epochs:
            raise BplabError(f"{run_dir} already finished {resume['state']['epoch']} of "
                             f"{cfg.epochs} epochs; pass a larger --epochs to train on")

    dist_info = init_distributed(cfg.device)
    try:
        if resume is None:
            run_dir = None
            if dist_info.is_main:
                run_dir = make_run_dir("train", args.out)
                write_json(run_dir / "config.json", to_dict(cfg))
            run_dir = Path(broadcast_object(str(run_dir) if run_dir else None, dist_info))
        elif dist_info.is_main:
            write_json(run_dir / "config.json", to_dict(cfg))
        summary = run_training(cfg, run_dir, dist_info, resume=resume)
    finally:
        cleanup_distributed()
    if dist_info.is_main:
        print(f"test_accuracy {summary['test_accuracy']:.4f}  params {summary['params']:,}  "
              f"seconds_per_epoch {summary['seconds_per_epoch']:.1f}  run {run_dir}")
    return 0


# --- eval, predict, export -----------------------------------------------------------------
def load_run_model(run_dir: str | Path, checkpoint: str = "best.pt", device="cpu"):
    """Rebuild the trained model of a run folder; return (model, checkpoint dict)."""
    from bplab.models import create_model
    from bplab.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(Path(run_dir) / checkpoint, map_location=device)
    for key in ("model_name", "class_names", "data_info", "model"):
        if key not in ckpt:
            raise BplabError(f"{Path(run_dir) / checkpoint} has no {key!r}; it was not written "
                             "by `bplab train`")
    info = ckpt["data_info"]
    model = create_model(ckpt["model_name"], num_classes=len(ckpt["class_names"]),
                         in_chans=info["in_chans"], img_size=info["img_size"],
                         **ckpt.get("model_args", {}))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def cmd_eval(args: argparse.Namespace) -> int:
    """Score a run's checkpoint on the test split of its dataset (`bplab eval`)."""
    from torch import nn

    from bplab.runs import write_json
    from bplab.training.data import build_data, make_loader
    from bplab.training.distributed import DistInfo, choose_device
    from bplab.training.loop import Trainer
    from bplab.training.metrics import classification_report, format_report
    from bplab.training.recipe import config_from_dict

    if args.output and Path(args.output).exists():
        raise BplabError(f"{args.output} already exists; choose another --output")
    device = choose_device(args.device)
    model, ckpt = load_run_model(args.run_dir, args.checkpoint, device)
    cfg = config_from_dict(ckpt["config"])
    if args.data_dir:
        cfg.data.data_dir = args.data_dir
    data = build_data(cfg.data, seed=cfg.seed)
    dist_info = DistInfo(device=device)
    loader = make_loader(data.test, cfg.data.eval_batch_size, train=False, dist_info=dist_info)
    trainer = Trainer(model, None, nn.CrossEntropyLoss(), loader, dist_info=dist_info)
    logs, logits, targets = trainer.evaluate(loader, prefix="test_")
    report = classification_report(targets.numpy(), logits.argmax(dim=1).numpy(),
                                   data.class_names)
    report["test_loss"] = logs["test_loss"]
    print(format_report(report))
    print(f"test_loss {logs['test_loss']:.4f}  ({len(targets)} test images, {args.checkpoint})")
    if args.output:
        write_json(args.output, report)
    return 0


def read_image_for_model(path: str | Path, in_chans: int, img_size: int, resize: bool,
                         invert: bool = False):
    """Read an image file as uint8 (H, W, C) matching the model's channels and size.

    RGB images are converted to grayscale for one-channel models, and grayscale to RGB for
    three-channel ones, with a log line. A size mismatch raises unless `resize` is set.
    """
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
    except FileNotFoundError:
        raise BplabError(f"image {path} not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise BplabError(f"image {path} could not be read: {exc}") from None
    mode = "L" if in_chans == 1 else "RGB"
    if in_chans not in (1, 3):
        raise BplabError(f"the model takes {in_chans} channels; predict handles 1 or 3")
    if image.mode != mode:
        log.info("%s: converted PIL mode %s to %s for a %d-channel model", path, image.mode, mode,
                 in_chans)
        image = image.convert(mode)
    if image.size != (img_size, img_size):
        if not resize:
            raise BplabError(f"image {path} is {image.size[0]}x{image.size[1]} but the model "
                             f"takes {img_size}x{img_size}; pass --resize to resize it")
        image = image.resize((img_size, img_size), Image.Resampling.BILINEAR)
    if invert:
        image = ImageOps.invert(image)
    array = np.array(image, dtype=np.uint8)  # a writable copy, as torch.from_numpy expects
    return array[..., None] if array.ndim == 2 else array


def cmd_predict(args: argparse.Namespace) -> int:
    """Print the top classes with probabilities for each image (`bplab predict`)."""
    import torch

    model, ckpt = load_run_model(args.run_dir, args.checkpoint)
    info, names = ckpt["data_info"], ckpt["class_names"]
    mean = torch.tensor(info["mean"]).view(-1, 1, 1)
    std = torch.tensor(info["std"]).view(-1, 1, 1)
    top = max(1, min(args.top, len(names)))
    for path in args.images:
        array = read_image_for_model(path, info["in_chans"], info["img_size"], args.resize,
                                     args.invert)
        x = torch.from_numpy(array).permute(2, 0, 1).float().div(255)  # (C, H, W)
        with torch.no_grad():
            probs = model(((x - mean) / std)[None]).softmax(dim=1)[0]
        values, indices = probs.topk(top)
        ranked = ", ".join(f"{names[i]} {p:.4f}" for p, i in zip(values.tolist(), indices.tolist()))
        print(f"{path}: {ranked}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a run's model to ONNX (checked with onnxruntime when installed) or a .pt2 program."""
    import importlib.util

    import torch

    run_dir = Path(args.run_dir)
    suffix = ".onnx" if args.format == "onnx" else ".pt2"
    output = Path(args.output) if args.output else run_dir / f"model{suffix}"
    if output.exists():
        raise BplabError(f"{output} already exists; choose another --output")
    if args.format == "onnx" and importlib.util.find_spec("onnx") is None:
        raise BplabError("ONNX export needs the onnx package: pip install onnx onnxruntime")
    model, ckpt = load_run_model(run_dir, args.checkpoint)
    info = ckpt["data_info"]
    x = torch.randn(2, info["in_chans"], info["img_size"], info["img_size"])
    with torch.no_grad():
        expected = model(x).numpy()

    if args.format == "pt2":
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
        torch.export.save(program, str(output))
        with torch.no_grad():
            got = torch.export.load(str(output)).module()(x).numpy()
        checked = "reloaded with torch.export.load"
    else:
        torch.onnx.export(model, (x,), str(output), input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"},
                                                                 "logits": {0: "batch"}})
        if importlib.util.find_spec("onnxruntime") is None:
            print(f"wrote {output} (not checked: pip install onnxruntime to compare outputs)")
            return 0
        import onnxruntime

        session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"images": x.numpy()})[0]
        checked = "checked with onnxruntime"
    error = float(abs(got - expected).max())
    if error > 1e-3:
        raise BplabError(f"exported model {output} differs from PyTorch by {error:.2e} "
                         "(max abs logit difference)")
    print(f"wrote {output} ({checked}: max abs logit difference {error:.1e})")
    return 0


# --- course task3 --------------------------------------------------------------------------
# The course's settings: plain recipes, no augmentation, constant learning rate, 10 epochs.
# NOTE: the course gives "SGD, lr 1e-3" for the CNNs without a momentum value; 0.9 is assumed.
COURSE_RUNS = {
    "lenet5": {"optim.name": "sgd", "optim.lr": 1e-3},
    "vgg_course": {"optim.name": "sgd", "optim.lr": 1e-3},
    "resnet_course": {"optim.name": "sgd", "optim.lr": 1e-3},
    "vit_course": {"optim.name": "adam", "optim.lr": 1e-3},
}
COURSE_COMMON = {"optim.momentum": 0.9, "optim.weight_decay": 0.0, "schedule.name": "constant",
                 "data.augment": "none", "data.batch_size": 64}
# bplab's presets: AdamW with a cosine schedule and digit augmentation.
BPLAB_RUNS = {
    "lenet5": {"optim.lr": 2e-3},
    "vgg_course_bn": {"optim.lr": 1e-3},
    "resnet8": {"optim.lr": 2e-3},
    "vit_tiny": {"optim.lr": 1e-3, "schedule.warmup_epochs": 1.0},
}
BPLAB_COMMON = {"optim.name": "adamw", "optim.weight_decay": 0.05, "schedule.name": "cosine",
                "data.augment": "digits", "data.batch_size": 128}


def course_task3_plan(only: str | None, models: str | None) -> list[tuple[str, str, dict]]:
    """Return (settings, model, overrides) for every run of `bplab course task3`."""
    plan = []
    for settings, runs, common in (("course", COURSE_RUNS, COURSE_COMMON),
                                   ("bplab", BPLAB_RUNS, BPLAB_COMMON)):
        if only and only != settings:
            continue
        for model, overrides in runs.items():
            plan.append((settings, model, {"model": model, **common, **overrides}))
    if models:
        wanted = [name.strip() for name in models.split(",") if name.strip()]
        known = sorted({model for _, model, _ in plan})
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise BplabError(f"unknown course model(s) {', '.join(unknown)}; "
                             f"valid choices: {', '.join(known)}")
        plan = [row for row in plan if row[1] in wanted]
    return plan


def cmd_course(args: argparse.Namespace) -> int:
    """Train the course's four models with its settings and bplab's presets; write a table."""
    from bplab.config import apply_overrides, to_dict
    from bplab.runs import make_run_dir, write_json
    from bplab.training.distributed import init_distributed
    from bplab.training.recipe import TrainConfig, run_training

    plan = course_task3_plan(args.only, args.models)
    root = make_run_dir("course-task3", args.out)
    dist_info = init_distributed(args.device)
    if dist_info.distributed:
        raise BplabError("`bplab course` runs in one process; launch `bplab train` under torchrun")
    rows = []
    for settings, model, overrides in plan:
        overrides = {**overrides, "epochs": args.epochs, "device": args.device,
                     "threads": args.threads,
                     "data.dataset": "mnist", "data.train_subset": args.train_subset}
        if args.data_dir:
            overrides["data.data_dir"] = args.data_dir
        cfg = apply_overrides(TrainConfig(), overrides)
        run_dir = make_run_dir("", root / f"{settings}-{model}")
        write_json(run_dir / "config.json", to_dict(cfg))
        log.info("course task3: %s settings, %s", settings, model)
        summary = run_training(cfg, run_dir, dist_info)
        rows.append({"settings": settings, "model": model, "optimizer": cfg.optim.name,
                     "lr": cfg.optim.lr, "epochs": summary["epochs"],
                     "test_accuracy": summary["test_accuracy"], "params": summary["params"],
                     "seconds_per_epoch": summary["seconds_per_epoch"], "run": run_dir.name})
        write_json(root / "table.json", rows)
    lines = ["| settings | model | optimizer, lr | epochs | test accuracy | parameters "
             "| s/epoch |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['settings']} | {row['model']} | {row['optimizer']}, {row['lr']:g} "
                     f"| {row['epochs']} | {100 * row['test_accuracy']:.2f} % "
                     f"| {row['params']:,} | {row['seconds_per_epoch']:.1f} |")
    table = "\n".join(lines) + "\n"
    (root / "table.md").write_text(table, encoding="utf-8")
    print(table, end="")
    print(f"table written to {root / 'table.md'}")
    return 0
