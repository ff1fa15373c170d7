"""`bplab voc train|eval|predict|download`: multi-label classification on VOC-layout data.

Training reuses `bplab.training.loop.Trainer` with its callbacks and run folders. After training,
the best checkpoint scores the validation split, and per-class thresholds are tuned there for F1
and saved in the checkpoint. The test split is then scored once with them: mAP under three named
variants, CP/CR/CF1, OP/OR/OF1, a classification report and figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np

from bplab.errors import BplabError

log = logging.getLogger(__name__)

LAYOUTS = ("voc", "tiny-voc", "voc-seg")
MODEL_SOURCES = ("auto", "bplab", "torchvision")
MONITOR = "val_mAP_voc_allpoint"


@dataclasses.dataclass
class VOCDataConfig:
    """Data folder, label layout, difficult policy and loader settings."""

    root: str = ""  # VOC year folder, VOCdevkit, its parent, or a mosaic/tiny-voc folder
    layout: str = "voc"  # voc (XML / per-class lists), tiny-voc (masks), voc-seg (palette masks)
    class_map: str = ""  # tiny-voc: mask id -> class, e.g. "1=person,2=bird"
    train_split: str = "train"  # split file trained on
    val_split: str = "val"  # split used for model selection and threshold tuning
    test_split: str = "test"  # split scored once at the end ("" to skip)
    difficult: str = "mask"  # training policy for difficult-only labels: mask, positive, negative
    img_size: int = 224  # images are resized to img_size x img_size
    augment: str = "crop-flip"  # train-time only: none, flip, crop-flip, resized-crop-flip
    batch_size: int = 32  # images per optimizer step
    eval_batch_size: int = 64  # images per forward pass when scoring
    num_workers: int = 0  # DataLoader worker processes
    skip_bad_images: bool = False  # drop unreadable images (counted in summary.json) instead of failing
    cache_limit_mb: int = 1024  # decode a split into memory when its resized images fit (0 = never)


@dataclasses.dataclass
class VOCModelConfig:
    """Network, weights and the stages to train."""

    name: str = "resnet18"  # a bplab zoo model or any torchvision classifier name
    source: str = "auto"  # auto (torchvision when weights are given), bplab or torchvision
    weights: str = "none"  # imagenet, none, or a local state dict file (torchvision models)
    train_stages: int = -1  # backbone stages trained from the top: -1 all, 0 head only (frozen)


@dataclasses.dataclass
class VOCLossConfig:
    """Loss settings."""

    name: str = "bce"  # bce (BCE with logits on masked targets) or asl (asymmetric loss)
    pos_weight: str = "none"  # none, auto (negatives/positives per class) or a number


@dataclasses.dataclass
class VOCTrainConfig:
    """Everything `bplab voc train` needs; saved as config.json in the run folder."""

    data: VOCDataConfig = dataclasses.field(default_factory=VOCDataConfig)
    model: VOCModelConfig = dataclasses.field(default_factory=VOCModelConfig)
    loss: VOCLossConfig = dataclasses.field(default_factory=VOCLossConfig)
    optim: object = None  # bplab.training.optim.OptimConfig, filled in by default_config()
    schedule: object = None  # bplab.training.optim.ScheduleConfig
    epochs: int = 20  # passes over the training split
    patience: int = 0  # early stopping on val mAP after this many epochs without gain (0 = off)
    grad_clip: float = 0.0  # max gradient norm (0 = off)
    seed: int = 0  # seeds weights, shuffling and augmentation
    device: str = "auto"  # auto, cpu, cuda, cuda:N or mps
    amp: bool = True  # mixed precision on CUDA
    threads: int = 0  # torch CPU threads (0 = torch's default)


def default_config() -> VOCTrainConfig:
    """Return the default config with the trainer's optimizer and schedule configs."""
    from bplab.training.optim import OptimConfig, ScheduleConfig

    cfg = VOCTrainConfig()
    cfg.optim = OptimConfig(name="adamw", lr=1e-3, weight_decay=1e-4)
    cfg.schedule = ScheduleConfig(name="cosine", warmup_epochs=1.0)
    return cfg


# --- data ----------------------------------------------------------------------------------

def load_split(cfg: VOCDataConfig, split: str, check_images: bool = False):
    """Load one split of the configured layout as a `VOCSplit`."""
    from bplab.data import masks, voc

    if not cfg.root:
        raise BplabError("no data folder given; pass --data DIR (a VOC or mosaic folder)")
    if cfg.layout == "voc":
        return voc.load_voc_split(cfg.root, split, check_images=check_images,
                                  skip_bad=cfg.skip_bad_images)
    if cfg.layout == "tiny-voc":
        if not cfg.class_map:
            raise BplabError("layout tiny-voc needs --class-map ID=NAME,... (the mask ids)")
        result = masks.load_tiny_voc_split(cfg.root, split, masks.parse_class_map(cfg.class_map))
    elif cfg.layout == "voc-seg":
        result = masks.load_voc_segmentation_split(voc.find_voc_root(cfg.root), split)
    else:
        from bplab.errors import unknown_name_error

        raise unknown_name_error("layout", cfg.layout, LAYOUTS)
    if check_images:
        voc._drop_unreadable(result, cfg.skip_bad_images)
    return result


def estimate_mean_std(paths, img_size: int, limit: int = 256) -> tuple[tuple, tuple]:
    """Return per-channel mean and std of up to `limit` training images, for scratch models."""
    from bplab.data.image_io import read_rgb

    pixels = []
    for path in list(paths)[:limit]:
        image = read_rgb(path).resize((img_size, img_size))
        pixels.append(np.asarray(image, dtype=np.float64).reshape(-1, 3) / 255.0)
    stacked = np.concatenate(pixels)
    return tuple(stacked.mean(0).round(4).tolist()), tuple(stacked.std(0).round(4).tolist())


def make_dataset(split, cfg: VOCDataConfig, mean, std, train: bool):
    """Wrap a `VOCSplit` as a dataset: train policy and augmentation, or masked and plain."""
    from bplab.data.voc import training_targets
    from bplab.training.multilabel_train import MultiLabelImageDataset, build_augment

    y, mask = training_targets(split.targets, cfg.difficult if train else "mask")
    augment = build_augment(cfg.img_size, cfg.augment if train else "none")
    megabytes = len(split) * 3 * cfg.img_size ** 2 / 2**20
    cache = 0 < megabytes <= cfg.cache_limit_mb
    return MultiLabelImageDataset(split.paths, y, mask, cfg.img_size, augment, mean, std, cache)


# --- model ---------------------------------------------------------------------------------

def build_model(cfg: VOCModelConfig, num_classes: int, img_size: int):
    """Build the model; return (model, mean, std) with mean/std None when they follow the data."""
    from bplab.models import pretrained
    from bplab.models.registry import create_model, list_models

    source = cfg.source
    if source not in MODEL_SOURCES:
        from bplab.errors import unknown_name_error

        raise unknown_name_error("model source", source, MODEL_SOURCES)
    if source == "auto":
        import torchvision

        zoo = list_models()
        known = set(zoo) | set(torchvision.models.list_models(module=torchvision.models))
        if cfg.name not in known:
            from bplab.errors import unknown_name_error

            raise unknown_name_error("model (bplab zoo or torchvision)", cfg.name, known)
        use_bplab = cfg.weights == "none" and cfg.name in zoo
        source = "bplab" if use_bplab else "torchvision"
    if source == "bplab":
        if cfg.weights != "none" or cfg.train_stages != -1:
            raise BplabError("weights and train_stages apply to torchvision models; "
                             "use --source torchvision")
        return create_model(cfg.name, num_classes=num_classes, in_chans=3, img_size=img_size), \
            None, None
    model, mean, std = pretrained.build_classifier(cfg.name, num_classes, cfg.weights,
                                                   cfg.train_stages)
    if cfg.weights == "none":
        return model, None, None
    return model, mean, std


def model_spec(cfg: VOCTrainConfig) -> VOCModelConfig:
    """Return the model config used to rebuild the net from a checkpoint (no weights needed)."""
    return dataclasses.replace(cfg.model, weights="none")


# --- train ---------------------------------------------------------------------------------

def train(cfg: VOCTrainConfig, out: str | None = None, resume: str | None = None) -> Path:
    """Train, tune thresholds on val, score test; return the run folder."""
    import torch

    from bplab.config import set_seed, to_dict
    from bplab.models.registry import describe
    from bplab.runs import make_run_dir, write_json
    from bplab.training import callbacks as cb
    from bplab.training.checkpoint import load_checkpoint
    from bplab.training.data import make_loader
    from bplab.training.distributed import DistInfo, choose_device
    from bplab.training.loop import Trainer
    from bplab.training.multilabel_train import auto_pos_weight, build_loss, val_map_metric
    from bplab.training.optim import build_optimizer, build_scheduler

    set_seed(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = choose_device(cfg.device)
    dist = DistInfo(device=device)
    check = cfg.data.skip_bad_images
    train_split = load_split(cfg.data, cfg.data.train_split, check)
    val_split = load_split(cfg.data, cfg.data.val_split, check)
    class_names = list(train_split.class_names)
    log.info("data %s: %d train, %d val images, %d classes", cfg.data.root, len(train_split),
             len(val_split), len(class_names))

    model, mean, std = build_model(cfg.model, len(class_names), cfg.data.img_size)
    if mean is None:
        mean, std = estimate_mean_std(train_split.paths, cfg.data.img_size)
    log.info("%s; normalization mean %s std %s", describe(model, cfg.model.name), mean, std)
    model.to(device)

    train_set = make_dataset(train_split, cfg.data, mean, std, train=True)
    val_set = make_dataset(val_split, cfg.data, mean, std, train=False)
    train_loader = make_loader(train_set, cfg.data.batch_size, train=True, dist_info=dist,
                               seed=cfg.seed, num_workers=cfg.data.num_workers)
    val_loader = make_loader(val_set, cfg.data.eval_batch_size, train=False, dist_info=dist,
                             num_workers=cfg.data.num_workers)

    pos_weight = None
    if cfg.loss.pos_weight == "auto":
        pos_weight = torch.tensor(auto_pos_weight(train_set.y.numpy(), train_set.mask.numpy()),
                                  dtype=torch.float32)
    elif cfg.loss.pos_weight != "none":
        try:
            value = float(cfg.loss.pos_weight)
        except ValueError:
            raise BplabError(f"invalid pos_weight {cfg.loss.pos_weight!r}: expected none, auto "
                             "or a number") from None
        pos_weight = torch.full((len(class_names),), value)
    loss_fn = build_loss(cfg.loss.name, pos_weight)

    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs, len(train_loader))
    run_dir = Path(resume) if resume else make_run_dir("voc", out)
    extra = {
        "config": to_dict(cfg), "model_spec": dataclasses.asdict(model_spec(cfg)),
        "class_names": class_names, "mean": list(mean), "std": list(std),
        "img_size": cfg.data.img_size,
        "pos_weight": None if pos_weight is None else pos_weight.tolist(),
    }
    callbacks = [cb.ProgressBar(), cb.EpochLogger(), cb.MetricsWriter(run_dir),
                 cb.TensorBoardLogger(run_dir), cb.Checkpointer(run_dir, extra),
                 cb.EarlyStopping(cfg.patience)]
    trainer = Trainer(model, optimizer, loss_fn, train_loader, val_loader,
                      metric_fn=val_map_metric, monitor=MONITOR, monitor_mode="max",
                      scheduler=scheduler, max_epochs=cfg.epochs, grad_clip=cfg.grad_clip,
                      amp=cfg.amp, dist_info=dist, callbacks=callbacks)
    if resume:
        trainer.load_state_dict(load_checkpoint(run_dir / "last.pt"))
        log.info("resuming %s after epoch %d", run_dir, trainer.state.epoch)
    else:
        write_json(run_dir / "config.json", to_dict(cfg))
    history = trainer.fit()

    # thresholds are tuned on val with the best weights and saved with them
    best_path = run_dir / "best.pt"
    checkpoint = load_checkpoint(best_path)
    model.load_state_dict(checkpoint["model"])
    thresholds = tune_and_save_thresholds(trainer, val_loader, checkpoint, best_path, pos_weight)
    summary = {
        "epochs": trainer.state.epoch, "best_epoch": trainer.state.best_epoch,
        f"best_{MONITOR}": trainer.state.best_metric,
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])) if history else None,
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "skipped_images": _skipped_summary(train_split, val_split),
        "thresholds": dict(zip(class_names, thresholds.tolist(), strict=True)),
    }
    if cfg.data.test_split:
        test_split = load_split(cfg.data, cfg.data.test_split, check)
        summary["skipped_images"] = _skipped_summary(train_split, val_split, test_split)
        test_set = make_dataset(test_split, cfg.data, mean, std, train=False)
        test_loader = make_loader(test_set, cfg.data.eval_batch_size, train=False, dist_info=dist,
                                  num_workers=cfg.data.num_workers)
        result = score_and_report(trainer, test_loader, test_set, class_names, thresholds,
                                  default_thresholds(pos_weight, len(class_names)), run_dir)
        summary.update(result["summary"])
    write_json(run_dir / "summary.json", summary)
    log.info("run folder %s", run_dir)
    return run_dir


def _skipped_summary(*splits) -> dict:
    """Return the count and paths of unreadable images left out of the given splits."""
    files = sorted({path for split in splits for path in split.skipped.skipped})
    return {"count": len(files), "files": files}


def default_thresholds(pos_weight, n_classes: int) -> np.ndarray:
    """Return 0.5, moved for pos_weight (see `pos_weight_threshold`), per class."""
    from bplab.training.multilabel import pos_weight_threshold

    if pos_weight is None:
        return np.full(n_classes, 0.5)
    return pos_weight_threshold(0.5, np.asarray(pos_weight, dtype=np.float64))


def tune_and_save_thresholds(trainer, val_loader, checkpoint, best_path, pos_weight) -> np.ndarray:
    """Tune per-class F1 thresholds on val, store them in the best checkpoint, return them."""
    import torch

    from bplab.training.checkpoint import save_checkpoint
    from bplab.training.multilabel import tune_thresholds
    from bplab.training.multilabel_train import three_state

    logits, (y, mask) = trainer.predict(val_loader)
    probs = torch.sigmoid(logits).numpy()
    n_classes = probs.shape[1]
    thresholds = tune_thresholds(probs, three_state(y, mask),
                                 default=default_thresholds(pos_weight, n_classes))
    checkpoint["thresholds"] = thresholds.tolist()
    save_checkpoint(best_path, checkpoint)
    return thresholds


def score_and_report(trainer, loader, dataset, class_names, thresholds, fixed_thresholds,
                     run_dir: Path, prefix: str = "test") -> dict:
    """Score a split, write ``<prefix>_eval.json``, the text report and figures; return results."""
    import torch

    from bplab.report.multilabel_plots import plot_ap_bars, plot_pr_curves, plot_prediction_grid
    from bplab.report.plots import save_figure
    from bplab.runs import write_json
    from bplab.training.multilabel import evaluate_multilabel, format_classification_report
    from bplab.training.multilabel_train import three_state

    logits, (y, mask) = trainer.predict(loader)
    probs = torch.sigmoid(logits).numpy()
    targets = three_state(y, mask)
    tuned = evaluate_multilabel(probs, targets, class_names, thresholds)
    fixed = evaluate_multilabel(probs, targets, class_names, fixed_thresholds)
    write_json(run_dir / f"{prefix}_eval.json", {"tuned_thresholds": tuned,
                                                  "fixed_threshold": fixed})
    text = format_classification_report(tuned["report"])
    (run_dir / f"{prefix}_classification_report.txt").write_text(
        f"thresholds tuned on the validation split; difficult labels ignored\n\n{text}\n")
    np.savez_compressed(run_dir / f"{prefix}_scores.npz", probs=probs, targets=targets)

    save_figure(plot_pr_curves(probs, targets, class_names, tuned["ap"]["voc_allpoint"]),
                run_dir / f"{prefix}_pr_curves.png")
    save_figure(plot_ap_bars(tuned["ap"]["voc_allpoint"], "voc_allpoint",
                             tuned["mAP"]["voc_allpoint"]), run_dir / f"{prefix}_ap.png")
    count = min(24, len(dataset))
    images = np.stack([dataset.load(i).permute(1, 2, 0).numpy() for i in range(count)])
    pred = probs[:count] >= thresholds
    save_figure(plot_prediction_grid(images.clip(0, 1), pred, targets[:count], class_names),
                run_dir / f"{prefix}_predictions.png")

    summary = {f"{prefix}_{key}": value for key, value in (
        ("mAP", tuned["mAP"]),
        ("CP", tuned["CP"]), ("CR", tuned["CR"]), ("CF1", tuned["CF1"]),
        ("OP", tuned["OP"]), ("OR", tuned["OR"]), ("OF1", tuned["OF1"]),
        ("CF1_at_fixed_threshold", fixed["CF1"]), ("OF1_at_fixed_threshold", fixed["OF1"]),
    )}
    log.info("%s mAP: VOC07 11-point %.4f, VOC10+ all-point %.4f, non-interpolated %.4f",
             prefix, tuned["mAP"]["voc07_11point"], tuned["mAP"]["voc_allpoint"],
             tuned["mAP"]["noninterp"])
    log.info("%s tuned thresholds: CP %.4f CR %.4f CF1 %.4f  OP %.4f OR %.4f OF1 %.4f", prefix,
             tuned["CP"], tuned["CR"], tuned["CF1"], tuned["OP"], tuned["OR"], tuned["OF1"])
    return {"summary": summary, "tuned": tuned, "fixed": fixed, "report_text": text}


# --- eval and predict from a run folder ----------------------------------------------------

def load_run(run_dir: Path, device_name: str = "auto"):
    """Rebuild the model of a run from best.pt; return (model, checkpoint, device)."""
    from bplab.training.checkpoint import load_checkpoint
    from bplab.training.distributed import choose_device

    checkpoint = load_checkpoint(run_dir / "best.pt")
    spec = VOCModelConfig(**checkpoint["model_spec"])
    spec = dataclasses.replace(spec, train_stages=-1)
    model, _, _ = build_model(spec, len(checkpoint["class_names"]), checkpoint["img_size"])
    model.load_state_dict(checkpoint["model"])
    device = choose_device(device_name)
    model.to(device).eval()
    if "thresholds" not in checkpoint:
        raise BplabError(f"{run_dir / 'best.pt'} has no tuned thresholds; the training run "
                         "did not finish")
    return model, checkpoint, device


def run_eval(args: argparse.Namespace) -> int:
    """Score a split of a trained run with its saved thresholds and print the report."""
    from bplab.training.data import make_loader
    from bplab.training.distributed import DistInfo
    from bplab.training.loop import Trainer

    run_dir = Path(args.run_dir)
    model, checkpoint, device = load_run(run_dir, args.device)
    cfg = VOCDataConfig(**checkpoint["config"]["data"])
    if args.data:
        cfg.root = args.data
    split = load_split(cfg, args.split, cfg.skip_bad_images)
    dataset = make_dataset(split, cfg, checkpoint["mean"], checkpoint["std"], train=False)
    dist = DistInfo(device=device)
    loader = make_loader(dataset, cfg.eval_batch_size, train=False, dist_info=dist)
    trainer = Trainer(model, optimizer=None, loss_fn=lambda logits, target: logits.sum() * 0,
                      train_loader=loader, dist_info=dist)
    class_names = checkpoint["class_names"]
    thresholds = np.asarray(checkpoint["thresholds"])
    fixed = default_thresholds(checkpoint.get("pos_weight"), len(class_names))
    result = score_and_report(trainer, loader, dataset, class_names, thresholds, fixed, run_dir,
                              prefix=f"eval_{args.split}")
    tuned = result["tuned"]
    print(f"{args.split}: {len(dataset)} images; difficult labels ignored")
    for variant, value in tuned["mAP"].items():
        print(f"mAP ({variant}): {value:.4f}")
    print(f"tuned thresholds: CP {tuned['CP']:.4f} CR {tuned['CR']:.4f} CF1 {tuned['CF1']:.4f} "
          f"OP {tuned['OP']:.4f} OR {tuned['OR']:.4f} OF1 {tuned['OF1']:.4f}")
    print(result["report_text"])
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Print the labels above each class's threshold, with probabilities, for each image."""
    import torch

    from bplab.training.multilabel_train import MultiLabelImageDataset

    model, checkpoint, device = load_run(Path(args.run_dir), args.device)
    class_names = checkpoint["class_names"]
    thresholds = np.asarray(checkpoint["thresholds"])
    dummy = np.zeros((len(args.images), len(class_names)))
    dataset = MultiLabelImageDataset(args.images, dummy, dummy, checkpoint["img_size"], None,
                                     checkpoint["mean"], checkpoint["std"])
    for index, path in enumerate(args.images):
        x = dataset[index][0].unsqueeze(0).to(device)
        with torch.no_grad():
            probs = torch.sigmoid(model(x)).squeeze(0).cpu().numpy()
        above = [i for i in np.argsort(-probs) if probs[i] >= thresholds[i]]
        labels = ", ".join(f"{class_names[i]} {probs[i]:.3f}" for i in above) or "(no label)"
        print(f"{path}: {labels}")
    return 0


# --- CLI -----------------------------------------------------------------------------------

def _config_from_args(args: argparse.Namespace) -> VOCTrainConfig:
    from bplab.config import apply_overrides, parse_set_options

    cfg = default_config()
    direct = {
        "data.root": args.data, "data.layout": args.layout, "data.class_map": args.class_map,
        "data.img_size": args.img_size, "data.batch_size": args.batch_size,
        "data.difficult": args.difficult, "data.augment": args.augment,
        "model.name": args.model, "model.weights": args.weights,
        "model.train_stages": args.train_stages, "loss.name": args.loss,
        "loss.pos_weight": args.pos_weight, "optim.lr": args.lr, "epochs": args.epochs,
        "seed": args.seed, "device": args.device,
    }
    overrides = {key: value for key, value in direct.items() if value is not None}
    if args.skip_bad_images:
        overrides["data.skip_bad_images"] = True
    if args.freeze_backbone:
        overrides["model.train_stages"] = 0
    overrides.update(parse_set_options(args.set))
    return apply_overrides(cfg, overrides)


def run_train(args: argparse.Namespace) -> int:
    """Build the config from the flags and train."""
    if args.resume:
        from bplab.runs import read_json

        config = read_json(Path(args.resume) / "config.json")
        cfg = default_config()
        from bplab.config import apply_overrides

        flat = {}
        for section in ("data", "model", "loss", "optim", "schedule"):
            for key, value in config[section].items():
                flat[f"{section}.{key}"] = value
        for key in ("epochs", "patience", "grad_clip", "seed", "device", "amp"):
            flat[key] = config[key]
        cfg = apply_overrides(cfg, flat)
        if args.epochs is not None:
            cfg.epochs = args.epochs
        train(cfg, resume=args.resume)
        return 0
    train(_config_from_args(args), out=args.out)
    return 0


def register(subparsers) -> None:
    """Add `bplab voc` with its train, eval, predict and download actions."""
    voc = subparsers.add_parser("voc", help="multi-label classification on VOC-layout data")
    from bplab.cli import OneLineErrorParser

    voc_sub = voc.add_subparsers(dest="voc_command", metavar="ACTION",
                                 parser_class=OneLineErrorParser)
    voc.set_defaults(func=lambda args: voc.print_help() or 2)

    t = voc_sub.add_parser("train", help="train a multi-label classifier and score the test split")
    t.add_argument("--data", help="VOC year folder (or VOCdevkit, or its parent), or a mosaic set")
    t.add_argument("--layout", choices=LAYOUTS, help="label source (default: voc)")
    t.add_argument("--class-map", help="tiny-voc mask ids, e.g. 1=person,2=bird")
    t.add_argument("--model", help="bplab zoo model or torchvision classifier (default: resnet18)")
    t.add_argument("--weights", help="imagenet, none (default) or a local state dict FILE")
    t.add_argument("--train-stages", type=int,
                   help="backbone stages trained from the top: -1 all (default), 0 head only")
    t.add_argument("--freeze-backbone", action="store_true",
                   help="train only the new head; BatchNorm statistics stay fixed")
    t.add_argument("--img-size", type=int, help="input size in pixels, e.g. 224 or 448 (default 224)")
    t.add_argument("--epochs", type=int, help="passes over the training split (default 20)")
    t.add_argument("--batch-size", type=int, help="images per step (default 32)")
    t.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    t.add_argument("--loss", choices=("bce", "asl"), help="loss (default bce)")
    t.add_argument("--pos-weight", help="BCE pos_weight: none (default), auto or a number")
    t.add_argument("--difficult", choices=("mask", "positive", "negative"),
                   help="training policy for difficult-only labels (default mask)")
    t.add_argument("--augment", choices=("none", "flip", "crop-flip", "resized-crop-flip"),
                   help="train-time augmentation (default crop-flip)")
    t.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable images and count them, instead of failing")
    t.add_argument("--seed", type=int, help="random seed (default 0)")
    t.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    t.add_argument("--out", help="run folder (default runs/voc/<timestamp>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last.pt")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key, e.g. optim.weight_decay=0.01")
    t.set_defaults(func=run_train)

    e = voc_sub.add_parser("eval", help="score a split of a trained run with its thresholds")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--split", default="test", help="split to score (default test)")
    e.add_argument("--data", help="data folder, if it moved since training")
    e.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    e.set_defaults(func=run_eval)

    p = voc_sub.add_parser("predict", help="print the labels of images with probabilities")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    p.set_defaults(func=run_predict)

    d = voc_sub.add_parser("download", help="download and extract Pascal VOC archives")
    d.add_argument("parts", nargs="+", metavar="PART",
                   help="2007-trainval, 2007-test or 2012-trainval")
    d.add_argument("--data-dir", help="data folder (default: $BPLAB_DATA_DIR or the user cache)")
    d.set_defaults(func=run_download)


def run_download(args: argparse.Namespace) -> int:
    """Download, verify and extract the named VOC archives."""
    from bplab.data.voc_download import download_voc

    for part in args.parts:
        folder = download_voc(part, args.data_dir)
        print(f"{part}: extracted into {folder}")
    return 0
