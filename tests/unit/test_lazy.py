"""tasks.lazy.LazyModule: a module loaded on first attribute access, picklable, never half there."""
import copy
import pickle
import subprocess
import sys

import cloudpickle
import pytest

from tasks.lazy import LazyModule


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
