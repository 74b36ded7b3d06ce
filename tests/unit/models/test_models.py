"""Model families: shapes, gradients, overfit-one-batch and checkpoints for every registered name,
then oracles (least squares, scikit-learn, recurrences and convolutions by hand, the KL formula)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch.testing import assert_close

from models import MODELS, build_model, load_model, save_model
from models.vae import kl_divergence


@dataclass(frozen=True)
class Case:
    """One valid way to build a family; `logits` is forward's width when it differs from output_dim."""

    id: str
    input_shape: tuple[int, ...]
    output_dim: int
    task: str
    params: dict = field(default_factory=dict)
    logits: int | None = None
    target_index: int | None = None  # forecasting rnn: the target's column among the features


# Small models without dropout, so one batch can be memorised in a few hundred steps.
CASES: dict[str, list[Case]] = {
    "linear": [Case("regression", (5,), 2, "regression"),
               Case("forecasting", (6, 2), 3, "forecasting")],
    "logistic": [Case("binary", (4,), 2, "classification", logits=1),
                 Case("3class", (4,), 3, "classification")],
    "mlp": [Case("classification", (6,), 3, "classification", {"hidden": [32], "dropout": 0.0}),
            Case("regression", (6,), 2, "regression", {"hidden": [32, 16], "dropout": 0.0, "activation": "tanh"}),
            Case("forecasting", (4, 2), 3, "forecasting", {"hidden": [32], "dropout": 0.0, "batch_norm": True})],
    "cnn": [Case("classification", (1, 6, 6), 3, "classification",
                 {"channels": [4, 8], "hidden": 16, "dropout": 0.0}),
            Case("regression", (2, 5, 7), 2, "regression",
                 {"channels": [4], "kernel_size": 5, "hidden": 16, "dropout": 0.0, "activation": "gelu"})],
    "rnn": [Case("lstm-classification", (5, 3), 3, "classification", {"cell": "lstm", "hidden_size": 16}),
            Case("gru-regression", (5, 3), 2, "regression", {"cell": "gru", "hidden_size": 16}),
            Case("rnn-forecasting", (6, 2), 3, "forecasting", {"cell": "rnn", "hidden_size": 16, "num_layers": 2},
                 target_index=1),
            Case("gru-forecasting-ar", (6, 3), 2, "forecasting", {"cell": "gru", "hidden_size": 16, "ar": True},
                 target_index=2)],
    "vae": [Case("generative", (10,), 0, "generative", {"latent_dim": 2, "hidden": [32, 16]})],
}

REGISTRY = [pytest.param(name, case, id=f"{name}-{case.id}")
            for name in sorted(MODELS) for case in CASES.get(name, [None])]
CLASSIFIERS = [p for p in REGISTRY if p.values[1] is not None and p.values[1].task == "classification"]
B = 16


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: thread hand-offs cost more than they save, and on a shared 2-core box they
    # made the overfit tests 10x slower and erratic.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(name: str, case: Case | None, class_weight=None):
    if case is None:
        pytest.fail(f"model {name!r} is registered but has no Case in CASES; add one")
    return build_model(name, list(case.input_shape), case.output_dim, case.task, case.params, class_weight,
                       target_index=case.target_index)


def batch_for(case: Case, n: int = B, seed: int = 1) -> dict:
    """Targets from a random linear teacher, so every family (linear ones included) can fit them."""
    g = torch.Generator().manual_seed(seed)
    d = math.prod(case.input_shape)
    x = torch.randn(n, d, generator=g)
    if case.task == "generative":  # 2-d latent structure the VAE can compress
        z = torch.randn(n, 2, generator=g)
        return {"x": z @ torch.randn(2, d, generator=g) + 0.05 * torch.randn(n, d, generator=g)}
    w = torch.randn(d, max(case.output_dim, 1), generator=g)
    t = x @ w
    if case.task == "classification":
        return {"x": x, "y": t.argmax(-1) if case.output_dim > 2 else (t[:, 0] > 0).long()}
    return {"x": x, "y": t}


# ---------------------------------------------------------------- every registered family


def test_every_registered_model_has_a_case():
    assert set(CASES) == set(MODELS)


@pytest.mark.parametrize("name,case", REGISTRY)
def test_output_shapes(name, case):
    model = make(name, case).eval()
    x = batch_for(case)["x"]
    with torch.no_grad():
        out, pred = model(x), model.predict(x)
    if case.task == "generative":
        recon, mu, logvar = out
        z = case.params["latent_dim"]
        assert recon.shape == (B, x.shape[1]) and mu.shape == (B, z) and logvar.shape == (B, z)
        assert pred.shape == x.shape
        return
    assert out.shape == (B, case.logits or case.output_dim)
    assert pred.shape == (B, case.output_dim)
    assert torch.isfinite(pred).all()
    if case.task == "classification":
        assert (pred >= 0).all() and (pred <= 1).all()
        assert_close(pred.sum(-1), torch.ones(B))


@pytest.mark.parametrize("name,case", REGISTRY)
def test_gradients_reach_every_parameter(name, case):
    model = make(name, case).train()
    loss, metrics = model.loss(batch_for(case))
    assert loss.ndim == 0 and torch.isfinite(loss) and "loss" in metrics
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name,case", REGISTRY)
def test_overfits_one_batch(name, case):
    model = make(name, case)
    batch = batch_for(case)

    def eval_loss():  # eval mode: batch norm uses running stats, the VAE decodes the posterior mean
        model.eval()
        with torch.no_grad():
            return model.loss(batch)[0].item()

    start = eval_loss()
    # Separable classes need a brisk step for the logits to grow; the VAE's sampled z wants a calmer one.
    opt = torch.optim.Adam(model.parameters(), lr=1e-2 if case.task == "generative" else 5e-2)
    model.train()
    for _ in range(300):
        opt.zero_grad()
        model.loss(batch)[0].backward()
        opt.step()
    end = eval_loss()
    # The VAE keeps a KL term (and β·KL trades against reconstruction), so it cannot reach ~0.
    frac = 0.5 if case.task == "generative" else 0.1
    assert end <= frac * start, f"{name}: loss {start:.4f} -> {end:.4f}"


@pytest.mark.parametrize("name,case", REGISTRY)
def test_save_load_round_trip(name, case, tmp_path):
    model = make(name, case)
    with torch.no_grad():  # move off the init so the test cannot pass by re-initialising alike
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()
    x = batch_for(case)["x"]
    save_model(model, name, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.pt", "model.json"}
    torch.manual_seed(123)  # a different init for the rebuilt model
    loaded = load_model(tmp_path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.params == model.params and loaded.input_shape == model.input_shape
    assert loaded.task == model.task and loaded.output_dim == model.output_dim
    with torch.no_grad():
        assert torch.equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("name,case", REGISTRY)
def test_unknown_params_are_refused(name, case):
    with pytest.raises(ValidationError, match="no_such_param"):
        build_model(name, list(case.input_shape), case.output_dim, case.task, {"no_such_param": 1})


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as e:
        build_model("nope", [4], 1, "regression")
    msg = str(e.value)
    assert "'nope'" in msg and all(repr(name) in msg for name in MODELS)


def test_wrong_task_or_shape_is_refused():
    with pytest.raises(ValueError, match="classification"):
        build_model("linear", [4], 2, "classification")
    with pytest.raises(ValueError, match="channels"):
        build_model("cnn", [8, 8], 2, "classification")
    with pytest.raises(ValueError, match="steps"):
        build_model("rnn", [8], 2, "regression")


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 6, 6), (2, 7, 5), (1, 1, 9)])
def test_cnn_builds_for_any_kernel_and_image_size(kernel_size, shape):
    """The head's input size is worked out at build time; even kernels once broke it."""
    model = build_model("cnn", list(shape), 3, "classification",
                        {"channels": [4, 4, 4], "kernel_size": kernel_size, "hidden": 8}).eval()
    x = torch.randn(2, math.prod(shape))
    assert model(x).shape == (2, 3)


# ---------------------------------------------------------------- class weights


@pytest.mark.parametrize("name,case", CLASSIFIERS)
def test_class_weight_is_weighted_cross_entropy(name, case):
    k = case.output_dim
    weight = [0.5 + i for i in range(k)]
    plain = make(name, case).eval()
    weighted = make(name, case, class_weight=weight).eval()
    weighted.load_state_dict(plain.state_dict())
    batch = batch_for(case, n=32)
    y = batch["y"]
    assert len(set(y.tolist())) > 1
    with torch.no_grad():
        logits = plain(batch["x"])
        if logits.shape[-1] == 1:  # one logit z ≡ two-class logits (0, z)
            logits = torch.cat([torch.zeros_like(logits), logits], dim=-1)
        got_plain, got_weighted = plain.loss(batch)[0], weighted.loss(batch)[0]
    assert_close(got_plain, F.cross_entropy(logits, y))
    assert_close(got_weighted, F.cross_entropy(logits, y, weight=torch.tensor(weight)))
    assert not torch.isclose(got_plain, got_weighted)


# ---------------------------------------------------------------- oracles


def fit_full_batch(model, batch, steps: int = 50):
    """Minimise the model's own loss on the whole batch with L-BFGS (float64)."""
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = model.loss(batch)[0]
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return model


def test_linear_matches_least_squares():
    rng = np.random.default_rng(0)
    n, d, k = 200, 5, 2
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=(d, k)) + np.array([1.5, -2.0]) + 0.3 * rng.normal(size=(n, k))
    model = build_model("linear", [d], k, "regression").double()
    fit_full_batch(model, {"x": torch.tensor(x), "y": torch.tensor(y)}, steps=5)

    design = np.hstack([x, np.ones((n, 1))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)  # (d + 1, k)
    assert_close(model.linear.weight.detach(), torch.tensor(coef[:d].T), atol=1e-6, rtol=1e-6)
    assert_close(model.linear.bias.detach(), torch.tensor(coef[d]), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("k", [2, 3])
def test_logistic_matches_sklearn(k):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(k)
    n, d = 400, 3
    x = rng.normal(size=(n, d))
    # Labels drawn from a logistic model with moderate weights: overlapping, so the MLE is finite.
    logits = x @ rng.normal(size=(d, k)) + rng.normal(size=k)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])

    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(x, y)  # C=inf: no penalty
    model = build_model("logistic", [d], k, "classification").double()
    fit_full_batch(model, {"x": torch.tensor(x), "y": torch.tensor(y)}, steps=5)
    with torch.no_grad():
        got = model.predict(torch.tensor(x))
    assert_close(got, torch.tensor(ref.predict_proba(x)), atol=1e-5, rtol=1e-4)


def rnn_model(cell: str, num_layers: int = 1, steps: int = 4, features: int = 3, hidden: int = 5):
    return build_model("rnn", [steps, features], 2, "regression",
                       {"cell": cell, "hidden_size": hidden, "num_layers": num_layers}).eval()


def layer_weights(model, layer: int):
    r = model.rnn
    return [getattr(r, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


@pytest.mark.parametrize("num_layers", [1, 2])
def test_rnn_cell_matches_recurrence_by_hand(num_layers):
    model = rnn_model("rnn", num_layers)
    x = torch.randn(3, 4 * 3)
    seq = x.reshape(3, 4, 3)  # (B, T, F)
    for layer in range(num_layers):
        w_ih, w_hh, b_ih, b_hh = layer_weights(model, layer)
        h, outs = torch.zeros(3, w_hh.shape[1]), []
        for t in range(seq.shape[1]):
            h = torch.tanh(seq[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
            outs.append(h)
        seq = torch.stack(outs, dim=1)  # (B, T, H): input of the next layer
    with torch.no_grad():
        assert_close(model(x), model.head(seq[:, -1]))


def test_lstm_matches_gate_equations_by_hand():
    model = rnn_model("lstm")
    x = torch.randn(3, 4 * 3)
    w_ih, w_hh, b_ih, b_hh = layer_weights(model, 0)
    h = c = torch.zeros(3, w_hh.shape[1])
    for x_t in x.reshape(3, 4, 3).unbind(1):
        i, f, g, o = (x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)  # PyTorch's gate order
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    with torch.no_grad():
        assert_close(model(x), model.head(h))


def test_gru_matches_grucell_with_copied_weights():
    model = rnn_model("gru")
    cell = torch.nn.GRUCell(3, 5)
    with torch.no_grad():
        for dst, src in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh),
                            layer_weights(model, 0), strict=True):
            dst.copy_(src)
        x = torch.randn(3, 4 * 3)
        h = torch.zeros(3, 5)
        for x_t in x.reshape(3, 4, 3).unbind(1):
            h = cell(x_t, h)
        assert_close(model(x), model.head(h))


def test_kl_divergence_matches_torch_distributions():
    mu, logvar = torch.randn(6, 4), torch.randn(6, 4)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros(4), torch.ones(4))
    expected = torch.distributions.kl_divergence(q, prior).sum(-1)  # (B,)
    assert_close(kl_divergence(mu, logvar), expected)
    assert_close(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_vae_loss_is_reconstruction_plus_beta_kl():
    case = CASES["vae"][0]
    model = build_model("vae", list(case.input_shape), 0, "generative", {**case.params, "beta": 0.5}).eval()
    x = batch_for(case)["x"]
    with torch.no_grad():
        loss, metrics = model.loss({"x": x})
        h = model.encoder(x)
        mu, logvar = model.mu(h), model.logvar(h)
        recon = model.decoder(mu)  # eval mode decodes the posterior mean
        d = x.shape[1]
        # −log N(x; x̂, I) without its constant ½·D·log 2π
        rec = -torch.distributions.Normal(recon, 1.0).log_prob(x).sum(-1) - 0.5 * d * math.log(2 * math.pi)
        kl = torch.distributions.kl_divergence(
            torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)).sum(-1)
    assert_close(loss, (rec + 0.5 * kl).mean())
    assert_close(metrics["elbo"], -(rec + kl).mean())
    assert_close(metrics["recon_mse"], (recon - x).pow(2).mean())


def test_vae_samples_in_training_and_is_deterministic_in_eval():
    case = CASES["vae"][0]
    model = make("vae", case)
    x = batch_for(case)["x"]
    with torch.no_grad():
        assert not torch.equal(model.train()(x)[0], model(x)[0])
        assert torch.equal(model.eval()(x)[0], model(x)[0])
        assert model.sample(5).shape == x[:5].shape


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_cnn_first_conv_matches_functional_conv2d(kernel_size):
    shape = (2, 6, 5)
    model = build_model("cnn", list(shape), 3, "classification",
                        {"channels": [4], "kernel_size": kernel_size, "hidden": 8}).eval()
    conv = model.features[0]
    x = torch.randn(3, math.prod(shape))
    image = x.reshape(3, *shape)  # (B, C, H, W)
    with torch.no_grad():
        expected = F.conv2d(image, conv.weight, conv.bias, padding=kernel_size // 2)
        assert_close(conv(model.shaped(x)), expected)
    assert expected.shape == (3, 4, 6, 5)  # odd kernels keep the spatial size
