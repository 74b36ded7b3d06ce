"""`train.optimizer`'s optimizers: torch's own Adam, AdamW and SGD, stepped without importing torch._dynamo.

torch.optim imports torch._dynamo (~1 s of CPU here) the first time an optimizer is made or stepped:
add_param_group, zero_grad, state_dict and load_state_dict are wrapped by torch._disable_dynamo, which imports it
on its first call; the functional adam by _disable_dynamo_if_unsupported, the same; and every step by
_use_grad_for_differentiable, which imports it on each call. Those wrappers matter only under torch.compile (they
keep dynamo from tracing the optimizer); conductor never compiles a model. Every process that trains paid the
import once: each trial worker of a cold sweep (two of them, ~2 of the ~26 core-s a cold sweep spends on two cores).

`optimizer_class(name)` gives torch's class itself where torch._dynamo is loaded already (DDP imports it) or
torch's wrappers are not the ones described here, else a subclass of the same name whose step runs torch's own
step body under the grad mode _use_grad_for_differentiable sets (its graph breaks do nothing outside compile), with
the _disable_dynamo wrappers marked as resolved to the functions they wrap (torch caches that resolution in
`fn.__dynamo_disable`; outside compile, torch._dynamo.disable(fn) runs fn as it is). The same arithmetic and
state_dict as torch's class: tests/unit/train/test_optim.py compares the two step by step, in a fresh process.
"""
from __future__ import annotations

import functools
import sys

import torch

CLASSES = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")  # Optimizer's @torch._disable_dynamo


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    cls = CLASSES[name]
    if "torch._dynamo" in sys.modules or not _resolved():
        return cls
    return _eager(cls)


@functools.cache
def _resolved() -> bool:
    """Mark torch's _disable_dynamo wrappers of the optimizers as resolved; False (nothing marked) where a wrapper is
    not the one this expects."""
    from torch.optim import adam, optimizer

    disabled = torch._disable_dynamo(_probe).__code__
    fallback = optimizer._disable_dynamo_if_unsupported()(_probe).__code__
    grad_mode = optimizer._use_grad_for_differentiable(_probe).__code__
    marked = [getattr(optimizer.Optimizer, n) for n in WRAPPED]
    if not (all(f.__code__ is disabled for f in marked) and adam.adam.__code__ is fallback
            and all(_step_wrapper(c).__code__ is grad_mode for c in set(CLASSES.values()))):
        return False
    for f in [*marked, adam.adam]:
        f.__wrapped__.__dynamo_disable = f.__wrapped__
    return True


def _probe(state_steps=None):
    """What torch's wrappers are made around, to compare their code with the ones on the optimizers."""


def _step_wrapper(cls):
    """cls.step under the profiling hook Optimizer.__init__ puts on a class's step the first time (if it has)."""
    step = cls.step
    return step.__wrapped__ if getattr(step, "hooked", False) else step


@functools.cache
def _eager(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    body = _step_wrapper(cls).__wrapped__

    @functools.wraps(body)
    def step(self, closure=None):
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return body(self, closure)

    return type(cls.__name__, (cls,), {"step": step, "__module__": __name__, "__doc__": cls.__doc__})
