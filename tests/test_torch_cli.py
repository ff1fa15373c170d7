"""`bplab train`, `eval`, `predict` and `export` on a tiny image folder made by the test."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from _torch_fixtures import CLASSES, make_image, make_image_folder  # noqa: E402
from bplab.cli import main  # noqa: E402

TRAIN_ARGS = ["--model", "lenet5", "--epochs", "1", "--val-size", "15", "--batch-size", "16",
              "--lr", "3e-3", "--threads", "1", "--seed", "0"]
RUN_FILES = ["config.json", "metrics.jsonl", "metrics.csv", "last.pt", "best.pt", "summary.json",
             "test_report.json", "confusion_matrix.png", "worst_mistakes.png", "curves.png"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A one-epoch lenet5 run on a 3-class folder of 16x16 grayscale images."""
    root = tmp_path_factory.mktemp("data")
    data = make_image_folder(root / "shapes", {"train": 30, "test": 8})
    run_dir = root / "run"
    status = main(["train", "--dataset", str(data), "--out", str(run_dir), *TRAIN_ARGS])
    assert status == 0
    return run_dir, data


def test_train_writes_run_files(trained_run):
    """A one-epoch run writes every run-folder file and a consistent summary."""
    run_dir, _ = trained_run
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    assert missing == []
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["params"] > 0
    assert summary["epochs"] == 1
    assert summary["seconds_per_epoch"] > 0
    assert summary["test_images"] == 3 * 8
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]
    for key in ("train_loss", "val_loss", "val_accuracy", "lr", "seconds"):
        assert key in records[0]
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert "val_accuracy" in header


def test_train_rejects_existing_run_folder(trained_run, capsys):
    """A run folder that exists is an error without --resume; nothing in it changes."""
    run_dir, data = trained_run
    before = (run_dir / "summary.json").read_bytes()
    status = main(["train", "--dataset", str(data), "--out", str(run_dir), *TRAIN_ARGS])
    assert status == 2
    assert "already exists" in capsys.readouterr().err
    assert (run_dir / "summary.json").read_bytes() == before


def test_eval_prints_report(trained_run, capsys, tmp_path):
    """`bplab eval` reproduces the run's test accuracy and writes the JSON it is asked for."""
    run_dir, _ = trained_run
    output = tmp_path / "eval.json"
    assert main(["eval", str(run_dir), "--device", "cpu", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "macro avg" in out
    report = json.loads(output.read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert set(report["per_class"]) == set(CLASSES)


def test_predict_prints_top_classes(trained_run, capsys, tmp_path):
    """`bplab predict` prints each image with its top classes and probabilities."""
    run_dir, _ = trained_run
    path = tmp_path / "bar.png"
    Image.fromarray(make_image(0, np.random.default_rng(5))).save(path)
    assert main(["predict", str(run_dir), str(path), "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{path}: ")
    probs = [float(part.split()[-1]) for part in line.split(": ", 1)[1].split(", ")]
    assert len(probs) == 2
    assert probs[0] >= probs[1]
    assert 0.0 <= sum(probs) <= 1.0 + 1e-6


def test_predict_converts_rgb_for_grayscale_model(trained_run, capsys, tmp_path):
    """An RGB image is converted to grayscale for a one-channel model."""
    run_dir, _ = trained_run
    path = tmp_path / "rgb.png"
    gray = make_image(1, np.random.default_rng(6))
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(path)
    assert main(["predict", str(run_dir), str(path)]) == 0
    assert capsys.readouterr().out.startswith(str(path))


def test_predict_wrong_size_needs_resize(trained_run, capsys, tmp_path):
    """An image of the wrong size is refused with a clear message, and --resize accepts it."""
    run_dir, _ = trained_run
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 30), dtype=np.uint8)).save(path)
    assert main(["predict", str(run_dir), str(path)]) == 2
    err = capsys.readouterr().err
    assert "30x40" in err
    assert "16x16" in err
    assert "--resize" in err
    assert main(["predict", str(run_dir), str(path), "--resize"]) == 0


def test_predict_unreadable_image(trained_run, capsys, tmp_path):
    """A file that is not an image raises one error line naming it."""
    run_dir, _ = trained_run
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    assert main(["predict", str(run_dir), str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "broken.png" in err[0]


def test_export_pt2_matches(trained_run, capsys, tmp_path):
    """A torch.export program reloads and gives the model's logits for any batch size."""
    run_dir, _ = trained_run
    output = tmp_path / "model.pt2"
    assert main(["export", str(run_dir), "--format", "pt2", "--output", str(output)]) == 0
    assert output.is_file()
    assert "max abs logit difference" in capsys.readouterr().out
    program = torch.export.load(str(output)).module()
    assert program(torch.zeros(5, 1, 16, 16)).shape == (5, 3)


def test_export_onnx(trained_run, capsys, tmp_path):
    """ONNX export needs the onnx package; without it the error names the packages to install."""
    run_dir, _ = trained_run
    output = tmp_path / "model.onnx"
    status = main(["export", str(run_dir), "--format", "onnx", "--output", str(output)])
    try:
        import onnx  # noqa: F401
    except ImportError:
        assert status == 2
        assert "pip install onnx onnxruntime" in capsys.readouterr().err
        assert not output.exists()
    else:
        assert status == 0
        assert output.is_file()


def test_unknown_model_lists_choices(tmp_path, capsys):
    """An unknown model name is one error line listing the registered models."""
    assert main(["train", "--model", "lenet6", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'lenet6'" in err
    assert "lenet5" in err
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_lists_choices(tmp_path, capsys):
    """An unknown dataset name lists the built-in datasets and the folder option."""
    status = main(["train", "--dataset", "imagenet-1k", "--out", str(tmp_path / "run"),
                   "--threads", "1"])
    assert status == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'imagenet-1k'" in err
    assert "mnist, fashion-mnist, cifar10" in err


def test_missing_cifar10_says_how_to_get_it(tmp_path, capsys):
    """A data folder without the CIFAR-10 archives names the expected files."""
    status = main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"),
                   "--out", str(tmp_path / "run"), "--threads", "1"])
    assert status == 2
    err = capsys.readouterr().err
    assert "train.tar.gz" in err
    assert "BPLAB_DATA_DIR" in err


def test_unknown_config_key(tmp_path, capsys):
    """A --set key that the config lacks is rejected with the valid keys."""
    status = main(["train", "--set", "optim.momentun=0.5", "--out", str(tmp_path / "run")])
    assert status == 2
    assert "momentum" in capsys.readouterr().err


def test_list_models(capsys):
    """--list-models prints every model with its parameter count."""
    assert main(["train", "--list-models"]) == 0
    out = capsys.readouterr().out
    assert "model lenet5: 61,706 parameters" in out
    assert "vit_tiny" in out


def test_course_plan_pairs_settings():
    """course task3 trains the four course models with the course's optimizers, then presets."""
    from bplab.experiments.torch_train import course_task3_plan

    plan = course_task3_plan(None, None)
    course = {model: overrides for settings, model, overrides in plan if settings == "course"}
    assert sorted(course) == ["lenet5", "resnet_course", "vgg_course", "vit_course"]
    assert course["vgg_course"]["optim.name"] == "sgd"
    assert course["vgg_course"]["optim.lr"] == 1e-3
    assert course["vit_course"]["optim.name"] == "adam"
    assert all(o["data.augment"] == "none" for o in course.values())
    assert [m for s, m, _ in plan if s == "bplab"] == ["lenet5", "vgg_course_bn", "resnet8",
                                                       "vit_tiny"]


def test_course_unknown_model(capsys, tmp_path):
    """An unknown --models entry lists the course's models."""
    status = main(["course", "task3", "--models", "alexnet", "--out", str(tmp_path / "c")])
    assert status == 2
    err = capsys.readouterr().err
    assert "alexnet" in err
    assert "vit_course" in err
