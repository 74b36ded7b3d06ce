"""train.optimizer's classes (tasks/train/optim.py) train as torch's own do, without importing torch._dynamo."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

# In a fresh interpreter (this test process may have loaded torch._dynamo already): `fit` with each optimizer, then
# a resumed fit from its state; then all again with torch._dynamo loaded, when torch's own classes are used.
SCRIPT = """
import json, sys
import torch
from models import build_model
from tasks.spec import Train
from tasks.train import LossModule, fit
from tasks.train.loop import make_optimizer

def batches(epoch):
    g = torch.Generator().manual_seed(epoch)
    return [{"x": torch.randn(16, 6, generator=g), "y": torch.randint(0, 3, (16,), generator=g)} for _ in range(4)]

def train(name):
    torch.manual_seed(0)
    model = build_model("mlp", (6,), 3, "classification")
    cfg = Train(epochs=3, lr=0.01, optimizer=name, weight_decay=0.001, early_stopping=None)
    states = []
    fit(LossModule(model), model, batches, None, cfg, None, report=lambda row, p, s, b: states.append(s) or False)
    cls = type(make_optimizer(model.parameters(), cfg))
    cfg = Train(epochs=5, lr=0.01, optimizer=name, weight_decay=0.001, early_stopping=None)
    fit(LossModule(model), model, batches, None, cfg, None, optimizer_state=states[-1]["optimizer"])
    return cls, [p.detach().clone() for p in model.parameters()], states[-1]["optimizer"]

names = ("adam", "adamw", "sgd")
first = {name: train(name) for name in names}
dynamo = "torch._dynamo" in sys.modules
import torch._dynamo  # noqa: F401 - from here on, torch's own classes
out = {}
for name in names:
    (cls, weights, state), (cls2, weights2, state2) = first[name], train(name)
    out[name] = {"module": cls.__module__, "name": cls.__name__, "dynamo": dynamo, "module_after": cls2.__module__,
                 "same": all(torch.equal(a, b) for a, b in zip(weights, weights2)),
                 "state": state["param_groups"] == state2["param_groups"] and
                          all(torch.equal(state["state"][k][s], state2["state"][k][s])
                              for k in state["state"] for s in state["state"][k])}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def trained():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_the_optimizers_train_as_torchs_own_without_loading_torch_dynamo(trained, name):
    got = trained[name]
    assert got["module"] == "tasks.train.optim" and got["name"] == {"adam": "Adam", "adamw": "AdamW"}.get(name, "SGD")
    assert not got["dynamo"]  # a fit and a resumed fit (state_dict, load_state_dict, zero_grad, step) never load it
    assert got["module_after"] == "torch.optim." + name  # with torch._dynamo loaded, torch's own class
    assert got["same"] and got["state"]  # the same weights and optimizer state, bit for bit
