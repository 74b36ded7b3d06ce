"""tasks.lazy.LazyModule: a module loaded on first attribute access, picklable, never half there."""
import copy
import json
import pickle
import subprocess
import sys

import cloudpickle
import pytest

from tasks.lazy import LazyModule, defer


def test_a_lazy_module_loads_on_first_use_only():
    code = ("import sys; from tasks.lazy import LazyModule; m = LazyModule('fractions'); "
            "print('fractions' in sys.modules); print(m.Fraction(1, 3) + m.Fraction(1, 6)); print('fractions' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "1/2", "True"]


def test_a_lazy_module_pickles_and_copies_as_itself():
    m = LazyModule("json")
    for other in (pickle.loads(pickle.dumps(m)), pickle.loads(cloudpickle.dumps(m)), copy.deepcopy(m)):
        assert other.loads("[1, 2]") == [1, 2] and repr(other) == "<lazy module 'json'>"
    with pytest.raises(AttributeError):
        m.no_such_name  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        LazyModule("no_such_module_here").anything  # noqa: B018


# in a fresh interpreter: Optuna and torch imported after tasks.sweep (which defers redis), then redis used
DEFERRED = """
import json, sys
import tasks.sweep
import optuna
import inspect
import torch  # its import asks inspect.getmodule, which probes every module in sys.modules for __file__
inspect.getmodule(json)
out = {"loaded_with_optuna": "redis.client" in sys.modules, "otel": "opentelemetry.sdk" in sys.modules}
backend = optuna.storages.journal.JournalRedisBackend("redis://127.0.0.1:6379")  # a client; connects on first use
import redis.asyncio
from redis import Redis
out.update(client=type(backend._redis).__module__, same=Redis is redis.Redis is sys.modules["redis"].Redis,
           asyncio=redis.asyncio.Redis.__module__, real=type(sys.modules["redis"]).__name__)
print(json.dumps(out))
"""


def test_a_deferred_module_costs_nothing_until_used_and_then_is_the_module():
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", DEFERRED], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {"loaded_with_optuna": False, "otel": False, "client": "redis.client", "same": True,
                   "asyncio": "redis.asyncio.client", "real": "module"}


def test_defer_leaves_missing_imported_and_dotted_modules_to_a_plain_import():
    assert not defer("no_such_module_here") and "no_such_module_here" not in sys.modules
    assert not defer("json") and not defer("os.path")
