"""Sequential, optimizers, schedules, fit, the estimator and save/load of the NumPy engine."""

import warnings

import numpy as np
import pytest

from bplab.data.moons import load_moons
from bplab.engine.estimator import BPClassifier
from bplab.engine.io import load_network, save_network
from bplab.engine.layers import Layer, Linear
from bplab.engine.losses import SoftmaxCrossEntropy
from bplab.engine.network import Sequential, build_mlp
from bplab.engine.optim import Adam, get_optimizer
from bplab.engine.schedules import get_schedule
from bplab.engine.trainer import fit
from bplab.errors import BplabError


class BatchSpy(Layer):
    """Identity layer that records the batches passed to its forward."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x):
        if self.training:
            self.batches.append(x.copy())
        return x

    def backward(self, grad_out):
        return grad_out


def _toy_data(n=10, d=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, classes, size=n)


def test_adam_first_two_steps_match_hand_values():
    """Adam from x=0 with gradient 0.5 moves to -9.9999998e-4, then -1.99999996e-3."""
    x = np.zeros(1, dtype=np.float64)
    grad = np.full(1, 0.5)
    opt = Adam([("x", x, grad)], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    opt.step()
    assert x[0] == pytest.approx(-9.9999998e-4, rel=1e-9)
    opt.step()
    assert x[0] == pytest.approx(-1.99999996e-3, rel=1e-9)


def test_adam_first_step_is_lr_for_every_tensor():
    """With four parameter tensors, each one's first Adam step is about -lr whatever its gradient."""
    rng = np.random.default_rng(0)
    params = [(f"p{i}", np.zeros(shape), rng.normal(size=shape) * 10 ** i)
              for i, shape in enumerate([(3,), (2, 2), (5, 1), (4,)])]
    Adam(params, lr=1e-3).step()
    for _, param, grad in params:
        np.testing.assert_allclose(param, -1e-3 * np.sign(grad), rtol=1e-6)


@pytest.mark.parametrize("name,options,torch_name,torch_options", [
    ("sgd", {"lr": 0.1}, "SGD", {"lr": 0.1}),
    ("momentum", {"lr": 0.1}, "SGD", {"lr": 0.1, "momentum": 0.9}),
    ("nesterov", {"lr": 0.1}, "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("rmsprop", {"lr": 0.01, "rho": 0.99}, "RMSprop", {"lr": 0.01, "alpha": 0.99, "eps": 1e-8}),
    ("adam", {"lr": 0.01}, "Adam", {"lr": 0.01}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1}, "AdamW", {"lr": 0.01, "weight_decay": 0.1}),
])
def test_optimizers_match_torch(name, options, torch_name, torch_options):
    """Five steps of each optimizer equal PyTorch's in float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    start = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(5)]
    param, grad = start.copy(), np.zeros_like(start)
    opt = get_optimizer(name, [("w", param, grad)], **options)
    tensor = torch.tensor(start, requires_grad=True)
    torch_opt = getattr(torch.optim, torch_name)([tensor], **torch_options)
    for g in grads:
        grad[...] = g
        opt.step()
        tensor.grad = torch.tensor(g)
        torch_opt.step()
    np.testing.assert_allclose(param, tensor.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_unknown_optimizer_lists_valid_names():
    """An unknown optimizer name is rejected with the valid names."""
    with pytest.raises(BplabError, match="unknown optimizer 'lbfgs'.*adam"):
        get_optimizer("lbfgs", [("w", np.zeros(1), np.zeros(1))])


def test_schedules_values():
    """Step, exponential, cosine and warm-up schedules give their textbook values."""
    assert get_schedule("constant", 0.1, 10).lr_at(7) == 0.1
    assert get_schedule("step", 0.1, 10, step_size=3, gamma=0.5).lr_at(6.5) == pytest.approx(0.025)
    assert get_schedule("exponential", 0.1, 10, gamma=0.9).lr_at(2) == pytest.approx(0.081)
    cosine = get_schedule("cosine", 0.1, 10)
    assert cosine.lr_at(0) == pytest.approx(0.1)
    assert cosine.lr_at(5) == pytest.approx(0.05)
    assert cosine.lr_at(10) == pytest.approx(0.0)
    warm = get_schedule("constant", 0.1, 10, warmup_epochs=2)
    assert warm.lr_at(1) == pytest.approx(0.05)
    assert warm.lr_at(3) == pytest.approx(0.1)
    with pytest.raises(BplabError, match="unknown learning-rate schedule"):
        get_schedule("cyclic", 0.1, 10)


def test_sequential_grads_accumulate_until_zero_grad():
    """Two backward passes add up; zero_grad and one pass give the single-pass gradient."""
    x, y = _toy_data()
    net = build_mlp((3, 5, 3), rng=np.random.default_rng(0), dtype=np.float64)
    loss = SoftmaxCrossEntropy()
    net.zero_grad()
    loss.forward(net.forward(x), y)
    net.backward(loss.backward())
    single = {name: g.copy() for name, _, g in net.named_parameters()}
    loss.forward(net.forward(x), y)
    net.backward(loss.backward())
    for name, _, grad in net.named_parameters():
        np.testing.assert_allclose(grad, 2 * single[name])
    net.zero_grad()
    loss.forward(net.forward(x), y)
    net.backward(loss.backward())
    for name, _, grad in net.named_parameters():
        np.testing.assert_array_equal(grad, single[name])


def test_fit_batches_cover_each_sample_once():
    """N=10 with batch 4 trains on batches of 4, 4, 2 holding every sample once per epoch."""
    x, y = _toy_data(n=10)
    x[:, 0] = np.arange(10)  # tag each sample
    spy = BatchSpy()
    net = Sequential([spy, Linear(3, 3, rng=np.random.default_rng(0))])
    fit(net, x, y, optimizer="sgd", lr=0.01, epochs=2, batch_size=4)
    assert [len(b) for b in spy.batches] == [4, 4, 2, 4, 4, 2]
    for epoch in range(2):
        seen = np.concatenate([b[:, 0] for b in spy.batches[3 * epoch:3 * epoch + 3]])
        assert sorted(seen.tolist()) == list(range(10))


def test_fit_loss_is_averaged_by_true_batch_size():
    """The epoch loss weights the short last batch by its size, so it equals the mean over samples."""
    x, y = _toy_data(n=10)
    net = Sequential([Linear(3, 3, rng=np.random.default_rng(0))])
    state = net.state_dict()
    history = fit(net, x, y, optimizer="sgd", lr=1e-12, epochs=1, batch_size=4)
    net.load_state_dict(state)
    full = SoftmaxCrossEntropy().forward(net.forward(x.astype(np.float32)), y)
    assert history.records[0]["loss"] == pytest.approx(full, rel=1e-5)


def test_fit_batch_one_and_clipped_batch():
    """Batch size 1 trains; batch size 200 with 30 samples is clipped to 30."""
    x, y = _toy_data(n=30)
    spy = BatchSpy()
    net = Sequential([spy, Linear(3, 3, rng=np.random.default_rng(0))])
    fit(net, x, y, optimizer="sgd", lr=0.01, epochs=1, batch_size=200)
    assert [len(b) for b in spy.batches] == [30]
    spy.batches.clear()
    fit(net, x, y, optimizer="sgd", lr=0.01, epochs=1, batch_size=1)
    assert [len(b) for b in spy.batches] == [1] * 30
    with pytest.raises(BplabError, match="batch size 0"):
        fit(net, x, y, batch_size=0)


def test_integer_inputs_copied_and_float32_kept():
    """uint8 and int64 inputs train as float32 copies; the caller's arrays and dtypes are unchanged."""
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.int64):
        x = rng.integers(0, 255, size=(20, 4)).astype(dtype)
        before = x.copy()
        y = rng.integers(0, 2, size=20)
        net = build_mlp((4, 6, 2), rng=np.random.default_rng(0))
        fit(net, x, y, optimizer="sgd", lr=1e-4, epochs=2, batch_size=8)
        assert x.dtype == dtype
        np.testing.assert_array_equal(x, before)
        for name, param, grad in net.named_parameters():
            assert param.dtype == np.float32, name
            assert grad.dtype == np.float32, name


def test_float64_on_request():
    """dtype=float64 trains every parameter in float64."""
    x, y = _toy_data()
    net = build_mlp((3, 4, 3), rng=np.random.default_rng(0))
    fit(net, x, y, epochs=1, dtype=np.float64)
    assert all(p.dtype == np.float64 for _, p, _ in net.named_parameters())


def test_same_seed_bit_identical_despite_global_rng():
    """Two runs with the same seed give identical weights even if the global RNG is used between."""
    x, y = _toy_data(n=40)

    def train():
        net = build_mlp((3, 8, 3), dropout=0.2, rng=np.random.default_rng(7))
        fit(net, x, y, epochs=3, batch_size=8, val_fraction=0.25, seed=7)
        return net.state_dict()

    first = train()
    np.random.seed(123)
    np.random.rand(1000)
    second = train()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_integral_float_labels_train_and_fractional_rejected():
    """Labels [0., 1., 2., 1.] train; labels [0.5, 1] are rejected with a clear message."""
    x = np.random.default_rng(0).normal(size=(4, 2))
    net = build_mlp((2, 4, 3), rng=np.random.default_rng(0))
    fit(net, x, np.array([0.0, 1.0, 2.0, 1.0]), epochs=1)
    net2 = build_mlp((2, 4, 3), rng=np.random.default_rng(0))
    with pytest.raises(BplabError, match="0.5"):
        fit(net2, x[:2], np.array([0.5, 1.0]), epochs=1)


def test_nan_input_rejected():
    """Training data with NaN is rejected before any step."""
    x, y = _toy_data()
    x[3, 1] = np.nan
    with pytest.raises(BplabError, match="NaN"):
        fit(build_mlp((3, 4, 3)), x, y, epochs=1)


def test_sgd_lr_100_on_moons_stops_with_clear_error():
    """SGD with lr 100 diverges on moons and stops with an error naming the epoch, never training on NaN."""
    data = load_moons(200, 0.2, seed=0)
    net = build_mlp((2, 32, 32, 2), activation="relu", rng=np.random.default_rng(0))
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(BplabError, match=r"diverged.*epoch \d+, step \d+") as exc:
            fit(net, data.x_train, data.y_train, optimizer="sgd", lr=100, epochs=50,
                batch_size=16, callbacks=[lambda record, _: seen.append(record)])
    assert "lower the learning rate" in str(exc.value)
    assert all(np.isfinite(r["loss"]) for r in seen)


def test_early_stopping_restores_best_weights():
    """Early stopping stops after `patience` bad epochs and keeps the best val-loss weights."""
    data = load_moons(300, 0.3, seed=1)
    net = build_mlp((2, 64, 64, 2), rng=np.random.default_rng(0))
    history = fit(net, data.x_train, data.y_train, lr=0.05, epochs=200, batch_size=16,
                  val_data=(data.x_val, data.y_val), patience=5, seed=0)
    assert history.stopped_early
    best = min(r["val_loss"] for r in history.records)
    assert history.best_epoch == next(r["epoch"] for r in history.records if r["val_loss"] == best)
    assert len(history.records) == history.best_epoch + 5
    loss = SoftmaxCrossEntropy().forward(net.forward(data.x_val.astype(np.float32)), data.y_val)
    assert loss == pytest.approx(best, rel=1e-5)


def test_estimator_string_labels_and_single_sample():
    """The estimator trains on string labels, predicts one sample of shape (n_features,) and scores."""
    data = load_moons(300, 0.1, seed=0)
    names = np.array(["lower", "upper"])[data.y_train]
    clf = BPClassifier(hidden=(16,), epochs=60, lr=0.01, seed=0).fit(data.x_train, names)
    assert clf.predict(data.x_test[0]).shape == (1,)
    assert clf.predict(data.x_test[0])[0] in ("lower", "upper")
    probs = clf.predict_proba(data.x_test)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert clf.score(data.x_test, np.array(["lower", "upper"])[data.y_test]) > 0.9
    assert clf.get_params()["hidden"] == (16,)
    with pytest.raises(BplabError, match="3 features"):
        clf.predict(np.zeros((2, 3)))


def test_save_load_identical_predictions(tmp_path):
    """A saved and reloaded network, with BatchNorm and dropout, predicts exactly the same."""
    data = load_moons(200, 0.2, seed=0)
    net = build_mlp((2, 8, 8, 2), batchnorm=True, dropout=0.1, rng=np.random.default_rng(0))
    fit(net, data.x_train, data.y_train, epochs=5, batch_size=16)
    save_network(net, tmp_path / "model", metadata={"note": "test"})
    loaded, metadata = load_network(tmp_path / "model.npz")
    assert metadata == {"note": "test"}
    x = data.x_test.astype(np.float32)
    np.testing.assert_array_equal(loaded.eval().forward(x), net.eval().forward(x))


def test_load_network_bad_files(tmp_path):
    """Missing and corrupt files give errors naming the file."""
    with pytest.raises(BplabError, match="model.npz not found"):
        load_network(tmp_path / "model")
    net = build_mlp((2, 3, 2))
    save_network(net, tmp_path / "model")
    (tmp_path / "model.npz").write_bytes(b"not a zip file")
    with pytest.raises(BplabError, match="model.npz is not a readable weights file"):
        load_network(tmp_path / "model")
    (tmp_path / "model.json").write_text("{broken")
    with pytest.raises(BplabError, match="model.json is not a valid network description"):
        load_network(tmp_path / "model")


def test_load_state_dict_shape_mismatch():
    """Loading weights of another shape names the parameter and both shapes."""
    net = build_mlp((2, 3, 2))
    state = build_mlp((2, 4, 2)).state_dict()
    with pytest.raises(BplabError, match=r"shape mismatch for 0.weight"):
        net.load_state_dict(state)


def test_fit_with_optimizer_instance_updates_the_network():
    """An optimizer built by the caller keeps updating the network's own arrays."""
    x, y = _toy_data(n=20)
    net = build_mlp((3, 4, 3), rng=np.random.default_rng(0))
    before = net.state_dict()
    opt = get_optimizer("sgd", net.named_parameters(), lr=0.1)
    fit(net, x, y, optimizer=opt, epochs=2)
    assert opt.t > 0
    assert not np.array_equal(net.state_dict()["0.weight"], before["0.weight"])


@pytest.mark.parametrize("options,message", [
    ({"epochs": 2.0}, "invalid epochs 2.0"),
    ({"epochs": -1}, "invalid epochs -1"),
    ({"batch_size": None}, "invalid batch size None"),
    ({"patience": -1, "val_fraction": 0.2}, "invalid patience -1"),
    ({"seed": -1}, "invalid seed -1"),
    ({"dtype": np.int32}, "expected float32 or float64"),
    ({"val_data": (np.empty((0, 3)), np.empty(0))}, "val_data is empty"),
])
def test_fit_rejects_bad_options(options, message):
    """Bad epochs, batch size, patience, seed, dtype or empty val_data raise one clear error."""
    x, y = _toy_data()
    with pytest.raises(BplabError, match=message):
        fit(build_mlp((3, 4, 3)), x, y, **options)


def test_fit_rejects_scalar_and_ragged_data():
    """A scalar target and ragged nested lists raise BplabError, not TypeError or ValueError."""
    x, _ = _toy_data()
    with pytest.raises(BplabError, match="scalar"):
        fit(build_mlp((3, 4, 3)), x, 5, epochs=1)
    with pytest.raises(BplabError, match="invalid input"):
        fit(build_mlp((2, 4, 3)), [[1.0, 2.0], [3.0]], [0, 1], epochs=1)


def test_fit_rejects_optimizer_of_other_network():
    """An optimizer built for another network's parameters is rejected instead of training nothing."""
    x, y = _toy_data()
    other = get_optimizer("sgd", build_mlp((3, 4, 3)).named_parameters())
    with pytest.raises(BplabError, match="other parameters"):
        fit(build_mlp((3, 4, 3)), x, y, optimizer=other, epochs=1)


def test_fit_diverging_last_step_raises_without_warnings():
    """Weights made NaN by an epoch's last step raise the divergence error, with no RuntimeWarning."""
    x, y = _toy_data(n=8)
    net = build_mlp((3, 4, 3), rng=np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(BplabError, match=r"training diverged: parameter .* epoch 1, step 1"):
            fit(net, x * 1e30, y, optimizer="sgd", lr=1e30, epochs=3, batch_size=8)


def test_estimator_predict_before_fit():
    """predict and predict_proba before fit raise BplabError, not AttributeError."""
    with pytest.raises(BplabError, match="not fitted"):
        BPClassifier().predict(np.zeros((1, 2)))
    with pytest.raises(BplabError, match="not fitted"):
        BPClassifier().predict_proba(np.zeros((1, 2)))


def test_estimator_bad_options_and_labels():
    """A bad dtype or seed, and labels mixing strings and None, raise BplabError."""
    x, y = _toy_data(n=20, d=2, classes=2)
    with pytest.raises(BplabError, match="expected float32 or float64"):
        BPClassifier(dtype="int32", epochs=1).fit(x, y)
    with pytest.raises(BplabError, match="invalid seed -1"):
        BPClassifier(seed=-1, epochs=1).fit(x, y)
    with pytest.raises(BplabError, match="all numbers or all strings"):
        BPClassifier(epochs=1).fit(x, np.array(["a", None] * 10, dtype=object))


def test_estimator_int_hidden_is_one_layer():
    """hidden=5 builds one hidden layer of width 5, as scikit-learn's MLPClassifier does."""
    x, y = _toy_data(n=20, d=2, classes=2)
    clf = BPClassifier(hidden=5, epochs=1).fit(x, y)
    assert clf.network_.layers[0].params["weight"].shape == (2, 5)


def _edit_json(path, update):
    import json
    description = json.loads(path.read_text())
    update(description)
    path.write_text(json.dumps(description))


def test_load_network_more_bad_files(tmp_path):
    """Empty, wrongly typed and malformed files raise BplabError naming the problem."""
    model = tmp_path / "model"
    save_network(build_mlp((2, 3, 2)), model)
    state = build_mlp((2, 3, 2)).state_dict()
    state["0.weight"] = np.full((2, 3), "x")
    np.savez(tmp_path / "model.npz", **state)
    with pytest.raises(BplabError, match="0.weight has dtype <U1"):
        load_network(model)
    (tmp_path / "model.npz").write_bytes(b"")
    with pytest.raises(BplabError, match="not a readable weights file"):
        load_network(model)
    save_network(build_mlp((2, 3, 2)), model)
    _edit_json(tmp_path / "model.json", lambda d: d.update(dtype="int32"))
    with pytest.raises(BplabError, match="expected float32 or float64"):
        load_network(model)
    save_network(build_mlp((2, 3, 2)), model)
    _edit_json(tmp_path / "model.json", lambda d: d["network"].update(layers=5))
    with pytest.raises(BplabError, match="'layers' must be a list"):
        load_network(model)
    save_network(build_mlp((2, 3, 2)), model)
    _edit_json(tmp_path / "model.json", lambda d: d["network"]["layers"][0].update(type=["x"]))
    with pytest.raises(BplabError, match="'type' key naming a layer"):
        load_network(model)


@pytest.mark.parametrize("name,options,message", [
    ("rmsprop", {"rho": 1.5}, "invalid rho 1.5"),
    ("rmsprop", {"eps": 0.0}, "invalid eps 0.0"),
    ("adam", {"eps": -1e-8}, "invalid eps -1e-08"),
    ("adamw", {"weight_decay": -0.1}, "invalid weight_decay -0.1"),
])
def test_optimizer_rejects_bad_options(name, options, message):
    """Out-of-range rho, eps and weight decay raise BplabError naming the option."""
    with pytest.raises(BplabError, match=message):
        get_optimizer(name, [("w", np.zeros(1), np.zeros(1))], **options)


def test_progress_bar_hidden_without_terminal(capsys):
    """progress=True draws no bar when stderr is not a terminal, so logs stay clean."""
    x, y = _toy_data()
    fit(build_mlp((3, 4, 3)), x, y, epochs=2, progress=True)
    assert capsys.readouterr().err == ""


def test_backward_params_equals_backward():
    """backward_params gives the same parameter gradients as backward and keeps input_grad set."""
    x, y = _toy_data(n=12, d=6)
    from bplab.engine.layers import Flatten

    net = Sequential([Flatten(), *build_mlp((6, 5, 3), dtype=np.float64).layers])
    loss = SoftmaxCrossEntropy()
    loss.forward(net.forward(x), y)
    grad_in = net.backward(loss.backward())
    assert grad_in.shape == x.shape
    full = {name: g.copy() for name, _, g in net.named_parameters()}
    net.zero_grad()
    loss.forward(net.forward(x), y)
    assert net.backward_params(loss.backward()) is None
    for name, _, grad in net.named_parameters():
        np.testing.assert_array_equal(grad, full[name])
    assert net.layers[1].input_grad is True


def test_linear_without_input_grad_returns_none():
    """Linear with input_grad off returns None from backward but still fills its gradients."""
    layer = Linear(4, 3, dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(5, 4))
    layer.forward(x)
    layer.input_grad = False
    assert layer.backward(np.ones((5, 3))) is None
    np.testing.assert_allclose(layer.grads["bias"], np.full(3, 5.0))
