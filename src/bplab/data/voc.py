"""Pascal VOC (2007, 2012) image-level labels from a VOCdevkit folder.

Layout read (``ROOT`` is e.g. ``VOCdevkit/VOC2007``)::

    ROOT/JPEGImages/<id>.jpg
    ROOT/Annotations/<id>.xml            objects with <name> and <difficult>
    ROOT/ImageSets/Main/<split>.txt      one image id per line
    ROOT/ImageSets/Main/<class>_<split>.txt   "<id> 1" (present), "-1" (absent), "0" (difficult only)

Targets have three states per (image, class): 1 positive, 0 negative, -1 difficult (every object of
that class in the image is marked difficult). Images are matched to labels by id, never by line
position. When both the XML and the per-class lists exist they are cross-checked, and a
disagreement is reported with the image id and class.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bplab.data.image_io import IMAGE_SUFFIXES, ReadReport, read_rgb
from bplab.errors import BplabError, unknown_name_error

log = logging.getLogger(__name__)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
# Value in a per-class list file -> three-state target.
_LIST_VALUE_TO_TARGET = {1: 1, -1: 0, 0: -1}
TRAIN_DIFFICULT_POLICIES = ("mask", "positive", "negative")


@dataclass
class VOCSplit:
    """One split of a VOC-layout set: image ids, paths and three-state targets."""

    root: Path  # the VOC year folder (contains JPEGImages, Annotations, ImageSets)
    split: str  # train, val, trainval, test, ...
    class_names: tuple[str, ...]  # column order of `targets`
    ids: list[str]  # image ids, in split-file order
    paths: list[Path]  # image file of each id
    targets: np.ndarray  # (N, C) int8: 1 positive, 0 negative, -1 difficult
    skipped: ReadReport = field(default_factory=ReadReport)  # unreadable images left out

    def __len__(self) -> int:
        return len(self.ids)

    def positives_per_class(self) -> dict[str, int]:
        """Return the number of images with a (non-difficult) positive label per class."""
        return {name: int(n) for name, n in zip(self.class_names, (self.targets == 1).sum(0),
                                                strict=True)}


def find_voc_root(path: str | Path, year: str | None = None) -> Path:
    """Return the VOC year folder for `path`, which may be it, a VOCdevkit folder or its parent."""
    path = Path(path)
    if (path / "ImageSets").is_dir():
        return path
    for base in (path, path / "VOCdevkit"):
        names = [f"VOC{year}"] if year else ["VOC2007", "VOC2012"]
        for name in names:
            if (base / name / "ImageSets").is_dir():
                return base / name
    raise BplabError(f"no VOC folder found at {path}: expected ImageSets/ in it, or in "
                     "VOCdevkit/VOC2007 or VOCdevkit/VOC2012 under it")


def read_id_list(path: Path) -> list[str]:
    """Read a split file: one image id per line (extra columns ignored), blank lines skipped."""
    if not path.is_file():
        raise BplabError(f"split file {path} not found")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def read_class_list(path: Path) -> dict[str, int]:
    """Read a per-class list ``<id> <1|-1|0>`` into {id: three-state target}."""
    result = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            value = int(parts[1])
            result[parts[0]] = _LIST_VALUE_TO_TARGET[value]
        except (IndexError, ValueError, KeyError):
            raise BplabError(f"{path}:{number}: expected '<image id> 1|-1|0', got {line!r}") from None
    return result


def discover_classes(root: Path) -> tuple[str, ...]:
    """Return the class names of a VOC-layout set.

    ``ROOT/classes.txt`` (one name per line) wins; else the names of the per-class lists in
    ImageSets/Main, sorted (for VOC these are exactly the 20 classes in the official order); else
    the 20 VOC classes.
    """
    listed = root / "classes.txt"
    if listed.is_file():
        return tuple(line.strip() for line in listed.read_text().splitlines() if line.strip())
    main = root / "ImageSets" / "Main"
    names = set()
    if main.is_dir():
        for path in main.glob("*_*.txt"):
            names.add(path.stem.rsplit("_", 1)[0])
    return tuple(sorted(names)) if names else VOC_CLASSES


def parse_annotation(path: Path) -> dict:
    """Parse one Annotations XML file into {'filename', 'objects': [(name, difficult, bbox)]}."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise BplabError(f"annotation {path} is not valid XML: {exc}") from None
    node = tree.getroot()
    objects = []
    for obj in node.iter("object"):
        name = (obj.findtext("name") or "").strip()
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        box = obj.find("bndbox")
        bbox = None
        if box is not None:
            bbox = tuple(int(float(box.findtext(k) or 0)) for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((name, difficult, bbox))
    return {"filename": (node.findtext("filename") or "").strip(), "objects": objects}


def targets_from_objects(objects, class_names) -> np.ndarray:
    """Return the three-state target row (C,) of one image from its annotated objects."""
    index = {name: i for i, name in enumerate(class_names)}
    target = np.zeros(len(class_names), dtype=np.int8)
    for name, difficult, _ in objects:
        if name not in index:
            raise BplabError(f"unknown object class {name!r}; valid choices: "
                             f"{', '.join(class_names)}")
        c = index[name]
        if not difficult:
            target[c] = 1
        elif target[c] == 0:
            target[c] = -1
    return target


def _image_path(root: Path, image_id: str, filename: str = "") -> Path:
    folder = root / "JPEGImages"
    if filename and (folder / filename).is_file():
        return folder / filename
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{image_id}{suffix}"
        if candidate.is_file():
            return candidate
    return folder / (filename or f"{image_id}.jpg")


def _targets_from_lists(main: Path, split: str, ids: list[str], class_names) -> np.ndarray | None:
    """Return targets (N, C) from the per-class lists, or None when they are absent."""
    files = [main / f"{name}_{split}.txt" for name in class_names]
    if not any(f.is_file() for f in files):
        return None
    targets = np.zeros((len(ids), len(class_names)), dtype=np.int8)
    for c, path in enumerate(files):
        if not path.is_file():
            raise BplabError(f"per-class list {path} not found (other classes have theirs)")
        values = read_class_list(path)
        missing = [i for i in ids if i not in values]
        if missing:
            raise BplabError(f"{path} has no entry for image id {missing[0]} "
                             f"({len(missing)} ids of split {split!r} missing)")
        targets[:, c] = [values[i] for i in ids]
    return targets


def load_voc_split(root: str | Path, split: str = "trainval", class_names=None,
                   source: str = "auto", check_images: bool = False,
                   skip_bad: bool = False) -> VOCSplit:
    """Load one split of a VOC-layout set.

    Parameters
    ----------
    root : path
        The VOC year folder, a VOCdevkit folder or its parent.
    split : str
        Name of a split file in ImageSets/Main (train, val, trainval, test).
    class_names : sequence of str, optional
        Column order; defaults to `discover_classes`.
    source : str
        ``auto`` (XML when present, cross-checked against the lists), ``xml`` or ``lists``.
    check_images, skip_bad : bool
        With `check_images` every image is decoded once now; an unreadable one raises a BplabError
        naming it, or with `skip_bad` is dropped and counted in ``VOCSplit.skipped``.
    """
    root = find_voc_root(root)
    class_names = tuple(class_names or discover_classes(root))
    main = root / "ImageSets" / "Main"
    if source not in ("auto", "xml", "lists"):
        raise unknown_name_error("label source", source, ("auto", "xml", "lists"))
    split_file = main / f"{split}.txt"
    if split_file.is_file():
        ids = read_id_list(split_file)
    else:
        first = main / f"{class_names[0]}_{split}.txt"
        if not first.is_file():
            available = sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem)
            raise BplabError(f"split {split!r} not found in {main}; available: "
                             f"{', '.join(available) or 'none'}")
        ids = read_id_list(first)

    annotations = root / "Annotations"
    use_xml = source == "xml" or (source == "auto" and annotations.is_dir())
    list_targets = None if source == "xml" else _targets_from_lists(main, split, ids, class_names)
    filenames = [""] * len(ids)
    if use_xml:
        targets = np.zeros((len(ids), len(class_names)), dtype=np.int8)
        for i, image_id in enumerate(ids):
            xml_path = annotations / f"{image_id}.xml"
            if not xml_path.is_file():
                raise BplabError(f"annotation {xml_path} not found for image id {image_id}")
            parsed = parse_annotation(xml_path)
            filenames[i] = parsed["filename"]
            targets[i] = targets_from_objects(parsed["objects"], class_names)
        if list_targets is not None:
            _cross_check(targets, list_targets, ids, class_names, split)
    elif list_targets is not None:
        targets = list_targets
    else:
        raise BplabError(f"no labels for split {split!r} in {root}: neither Annotations/ nor "
                         f"per-class lists ImageSets/Main/<class>_{split}.txt found")

    paths = [_image_path(root, i, f) for i, f in zip(ids, filenames, strict=True)]
    result = VOCSplit(root, split, class_names, ids, paths, targets)
    if check_images:
        _drop_unreadable(result, skip_bad)
    return result


def _cross_check(xml_targets, list_targets, ids, class_names, split) -> None:
    """Raise a BplabError naming the first image ids where the XML and the lists disagree."""
    rows, cols = np.nonzero(xml_targets != list_targets)
    if rows.size == 0:
        return
    names = {1: "positive", 0: "negative", -1: "difficult"}
    details = [f"{ids[r]} {class_names[c]}: XML {names[int(xml_targets[r, c])]}, "
               f"list {names[int(list_targets[r, c])]}" for r, c in zip(rows[:5], cols[:5],
                                                                          strict=True)]
    raise BplabError(f"split {split!r}: Annotations XML and per-class lists disagree on "
                     f"{rows.size} labels, e.g. {'; '.join(details)}")


def _drop_unreadable(split: VOCSplit, skip_bad: bool) -> None:
    keep = []
    for i, path in enumerate(split.paths):
        try:
            read_rgb(path)
        except BplabError as exc:
            if not skip_bad:
                raise
            log.warning("skipping %s", exc)
            split.skipped.skipped.append(str(path))
            split.skipped.reasons.append(str(exc))
            continue
        keep.append(i)
    split.ids = [split.ids[i] for i in keep]
    split.paths = [split.paths[i] for i in keep]
    split.targets = split.targets[keep]


def training_targets(targets, policy: str = "mask") -> tuple[np.ndarray, np.ndarray]:
    """Turn three-state targets into (float targets, float loss mask), both of shape (N, C).

    ``mask`` leaves difficult labels out of the loss (mask 0), ``positive`` and ``negative``
    train on them as that label.
    """
    if policy not in TRAIN_DIFFICULT_POLICIES:
        raise unknown_name_error("difficult policy", policy, TRAIN_DIFFICULT_POLICIES)
    targets = np.asarray(targets)
    difficult = targets == -1
    y = (targets == 1).astype(np.float32)
    mask = np.ones(targets.shape, dtype=np.float32)
    if policy == "mask":
        mask[difficult] = 0.0
    elif policy == "positive":
        y[difficult] = 1.0
    return y, mask
