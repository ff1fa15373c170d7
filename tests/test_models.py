"""Model zoo: registry sweep, the ViT's attention, and bad model options."""

import pytest

torch = pytest.importorskip("torch")

from bplab.errors import BplabError  # noqa: E402
from bplab.models import count_parameters, create_model, default_input, list_models  # noqa: E402
from bplab.models.vit import VisionTransformer  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run on one thread: the big models are much slower with threads fighting for a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", list_models())
def test_registry_sweep(name):
    """Each model maps a matching batch to finite logits and gives every parameter a gradient."""
    torch.manual_seed(0)
    in_chans, img_size = default_input(name)
    model = create_model(name, num_classes=7, in_chans=in_chans, img_size=img_size)
    x = torch.randn(2, in_chans, img_size, img_size)

    logits = model(x)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()

    logits.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_forward_is_head_of_features(name):
    """forward(x) equals forward_head(forward_features(x))."""
    torch.manual_seed(0)
    in_chans, img_size = default_input(name)
    model = create_model(name, num_classes=5, in_chans=in_chans, img_size=img_size).eval()
    x = torch.randn(2, in_chans, img_size, img_size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)))


@pytest.mark.parametrize("name", ["lenet5", "resnet8", "vit_tiny", "vgg_course_bn", "mlp"])
def test_small_models_take_cifar_input(name):
    """The 28x28 models also build for 32x32 RGB input."""
    model = create_model(name, num_classes=10, in_chans=3, img_size=32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_lenet5_parameter_count():
    """LeNet-5 for 28x28 digits has the classic 61,706 parameters."""
    assert count_parameters(create_model("lenet5")) == 61_706


def test_unknown_model_lists_valid_names():
    """An unknown model name raises and names the registered models."""
    with pytest.raises(BplabError, match="unknown model 'lenet6'.*lenet5.*vit_tiny"):
        create_model("lenet6")


def test_unknown_model_option_is_named():
    """An option that the constructor does not take raises a BplabError naming it."""
    with pytest.raises(BplabError, match="lenet5.*no_such_option"):
        create_model("lenet5", no_such_option=3)


def test_vgg_rejects_too_small_images():
    """VGG-11's five pooling stages need at least 32x32 input."""
    with pytest.raises(BplabError, match="at least 32x32"):
        create_model("vgg11", img_size=16)


def test_vit_rejects_indivisible_patch():
    """A patch size that does not divide the image is rejected."""
    with pytest.raises(BplabError, match="not divisible by patch_size"):
        create_model("vit_tiny", img_size=30)


def test_vit_attention_sums_to_one_over_keys():
    """Every query's attention weights over the keys sum to 1, in every block and head."""
    torch.manual_seed(0)
    model = create_model("vit_tiny", num_classes=10).eval()
    weights = model.attention_weights(torch.randn(3, 1, 28, 28))
    assert len(weights) == 6
    for w in weights:
        assert w.shape == (3, 4, 50, 50)  # (N, heads, 1 + 49 patches queries, keys)
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(dim=-1), torch.ones(3, 4, 50))
        # Over the queries the weights do not sum to 1 in general (the course's mistake).
        assert not torch.allclose(w.sum(dim=-2), torch.ones(3, 4, 50))


def test_vit_course_settings():
    """vit_course has patch 14 (4 patches + class token), embedding 64, one block of 4 heads."""
    model = create_model("vit_course")
    assert isinstance(model, VisionTransformer)
    assert model.num_patches == 4
    assert model.num_features == 64
    assert len(model.blocks) == 1
    assert model.blocks[0].attn.num_heads == 4
    assert model.blocks[0].mlp[0].out_features == 128


def test_vit_blocks_are_residual():
    """With attention and MLP outputs zeroed, a block returns its input unchanged."""
    model = create_model("vit_course")
    block = model.blocks[0]
    for layer in (block.attn.proj, block.mlp[3]):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    x = torch.randn(2, 5, 64)
    torch.testing.assert_close(block(x), x)


def test_torchvision_resnet_builds_without_weights():
    """resnet18 builds offline with a new classifier and a one-channel stem."""
    model = create_model("resnet18", num_classes=4, in_chans=1, img_size=32)
    assert model.net.fc.out_features == 4
    assert model.net.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)
