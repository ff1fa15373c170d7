"""`bplab voc train|eval|predict` on a small VOC tree; frozen backbones, losses, weights files."""

import json
import urllib.error

import numpy as np
import pytest

from bplab.cli import main
from bplab.errors import BplabError
from voc_fixtures import CLASSES, make_voc_tree

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from bplab.models.pretrained import build_classifier  # noqa: E402
from bplab.training.multilabel_train import (  # noqa: E402
    asymmetric_loss,
    masked_bce_loss,
    val_map_metric,
)


@pytest.fixture
def voc(tmp_path):
    return make_voc_tree(tmp_path)


def _train_args(voc, out, *extra):
    # the fixture has no test split: val doubles as the scored split
    return ["voc", "train", "--data", str(voc), "--model", "resnet8", "--img-size", "32",
            "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--out", str(out),
            "--skip-bad-images", "--set", "data.test_split=val", "--set", "threads=1", *extra]


def test_one_epoch_run_writes_everything(voc, tmp_path):
    """One epoch trains, tunes thresholds, scores, and writes the run folder files."""
    out = tmp_path / "run"
    assert main(_train_args(voc, out)) == 0
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "last.pt", "best.pt",
                 "summary.json", "test_eval.json", "test_classification_report.txt",
                 "test_pr_curves.png", "test_ap.png", "test_predictions.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_images"]["count"] == 1
    assert "000006" in summary["skipped_images"]["files"][0]
    assert set(summary["test_mAP"]) == {"voc07_11point", "voc_allpoint", "noninterp"}
    assert set(summary["thresholds"]) == set(CLASSES)
    checkpoint = torch.load(out / "best.pt", weights_only=False)
    assert len(checkpoint["thresholds"]) == len(CLASSES)
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert "val_mAP_voc_allpoint" in record


def test_truncated_image_fails_without_skip(voc, tmp_path, capsys):
    """Without --skip-bad-images the truncated file stops the run with its name."""
    args = [a for a in _train_args(voc, tmp_path / "run") if a != "--skip-bad-images"]
    args += ["--set", "data.cache_limit_mb=0"]
    with pytest.raises(BplabError, match="000006.jpg"):
        from bplab.cli import build_parser

        parsed = build_parser().parse_args(args)
        parsed.func(parsed)


def test_eval_and_predict(voc, tmp_path, capsys):
    """eval prints the three mAP variants; predict prints labels with probabilities."""
    out = tmp_path / "run"
    main(_train_args(voc, out))
    capsys.readouterr()
    assert main(["voc", "eval", str(out), "--split", "train", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    for variant in ("voc07_11point", "voc_allpoint", "noninterp"):
        assert f"mAP ({variant})" in text
    assert "CF1" in text
    assert "samples avg" in text
    image = voc / "JPEGImages" / "000005.png"
    assert main(["voc", "predict", str(out), str(image), "--device", "cpu"]) == 0
    assert str(image) in capsys.readouterr().out


def test_frozen_backbone_bn_stats_fixed(voc, tmp_path):
    """With a local weights file and --freeze-backbone, BatchNorm running stats and backbone
    weights stay as loaded while the head trains."""
    net = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    weights_file = tmp_path / "resnet18_fake.pth"
    torch.save(net.state_dict(), weights_file)
    out = tmp_path / "run"
    args = _train_args(voc, out, "--freeze-backbone", "--weights", str(weights_file))
    args[args.index("resnet8")] = "resnet18"
    assert main(args) == 0
    trained = torch.load(out / "last.pt", weights_only=False)["model"]
    original = net.state_dict()
    for key, value in original.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(trained[f"net.{key}"], value), key
    assert not torch.equal(trained["net.fc.weight"][:, :5], original["fc.weight"][:3, :5])
    checkpoint = torch.load(out / "best.pt", weights_only=False)
    assert checkpoint["mean"] == [0.485, 0.456, 0.406]


def test_frozen_bn_stays_in_eval_mode():
    """model.train() leaves frozen BatchNorm layers in eval mode and trains the head."""
    model, _, _ = build_classifier("resnet18", 3, "none", train_stages=1)
    model.train()
    assert not model.net.bn1.training  # stem: frozen
    assert not model.net.layer3[0].bn1.training
    assert model.net.layer4[0].bn1.training  # last stage: trained
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}


def test_train_stages_vgg_and_vit():
    """Stages split VGG at its max-pools and ViT into encoder layers; the head is new."""
    vgg, _, _ = build_classifier("vgg11", 4, "none", train_stages=0)
    assert len(vgg.stages) == 5
    assert [n for n, p in vgg.named_parameters() if p.requires_grad] == \
        ["net.classifier.6.weight", "net.classifier.6.bias"]
    vit, _, _ = build_classifier("vit_b_16", 4, "none", train_stages=2)
    assert vit.net.heads.head.out_features == 4
    assert vit.net.encoder.layers[-1].mlp[0].weight.requires_grad
    assert not vit.net.encoder.layers[0].mlp[0].weight.requires_grad


def test_offline_weights_one_message(monkeypatch, tmp_path):
    """Without network, asking for ImageNet weights names the expected file in one line."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(BplabError) as exc:
        build_classifier("resnet18", 20, "imagenet")
    message = str(exc.value)
    assert "\n" not in message
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "--weights FILE" in message


def test_weights_file_mismatch(tmp_path):
    """A state dict of another architecture is rejected naming the file."""
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(BplabError, match="r18.pth"):
        build_classifier("resnet34", 3, str(tmp_path / "r18.pth"))
    with pytest.raises(BplabError, match="not found"):
        build_classifier("resnet18", 3, str(tmp_path / "missing.pth"))


def test_unknown_torchvision_model():
    """An unknown architecture lists the valid ones."""
    with pytest.raises(BplabError, match="resnet50"):
        build_classifier("resnet_nope", 3)


def test_masked_bce_ignores_masked_labels():
    """A masked label does not change the loss, however wrong its logit is."""
    loss_fn = masked_bce_loss()
    y = torch.tensor([[1.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0]])
    a = loss_fn(torch.tensor([[2.0, -5.0]]), (y, mask))
    b = loss_fn(torch.tensor([[2.0, 50.0]]), (y, mask))
    assert a.item() == pytest.approx(b.item())
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(2.0),
                                                                    torch.tensor(1.0))
    assert a.item() == pytest.approx(expected.item())


def test_asl_reduces_to_bce():
    """With no focusing and no clip the asymmetric loss equals BCE."""
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    y = (torch.rand(5, 3, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    mask = torch.ones_like(y)
    asl = asymmetric_loss(gamma_pos=0, gamma_neg=0, clip=0)((logits), (y, mask))
    bce = masked_bce_loss()(logits, (y, mask))
    assert asl.item() == pytest.approx(bce.item(), rel=1e-5)


def test_asl_down_weights_easy_negatives():
    """An easy negative (p below the clip) costs nothing under ASL."""
    loss_fn = asymmetric_loss()
    y = torch.tensor([[0.0]])
    mask = torch.ones_like(y)
    easy = torch.logit(torch.tensor([[0.03]]))
    assert loss_fn(easy, (y, mask)).item() == pytest.approx(0.0, abs=1e-7)


def test_val_metric_ignores_masked():
    """The validation metric treats mask-0 labels as difficult and leaves them out."""
    logits = torch.tensor([[3.0], [-3.0], [0.0]])
    y = torch.tensor([[0.0], [1.0], [0.0]])
    mask = torch.tensor([[0.0], [1.0], [1.0]])
    result = val_map_metric(logits, (y, mask))
    # kept: positive at logit -3 below a negative at 0 -> precision 1/2 at the only positive
    assert result["mAP_noninterp"] == pytest.approx(0.5)
    assert np.isfinite(result["mAP_voc07_11point"])


def test_resume_continues(voc, tmp_path):
    """--resume RUN_DIR continues from last.pt to the new epoch count."""
    out = tmp_path / "run"
    assert main(_train_args(voc, out)) == 0
    assert main(["voc", "train", "--resume", str(out), "--epochs", "2"]) == 0
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def test_pos_weight_auto_and_asl(voc, tmp_path):
    """pos_weight auto is stored with the model; the asl loss trains too."""
    out = tmp_path / "pw"
    assert main(_train_args(voc, out, "--pos-weight", "auto")) == 0
    checkpoint = torch.load(out / "best.pt", weights_only=False)
    assert len(checkpoint["pos_weight"]) == len(CLASSES)
    assert min(checkpoint["pos_weight"]) >= 1.0
    assert main(_train_args(voc, tmp_path / "asl", "--loss", "asl")) == 0
    with pytest.raises(BplabError, match="pos_weight"):
        from bplab.training.multilabel_train import build_loss

        build_loss("asl", torch.ones(3))
