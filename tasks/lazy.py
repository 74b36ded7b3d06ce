"""Package attributes imported on first use (PEP 562), so that a driver that needs one small piece of a
package does not import torch or scikit-learn with it: `import flows.sweep` took ~5 s of a sweep's
start-up on 2 cores importing them for pieces (fit_parallel, Tracking) that need neither."""
from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy(package: str, names: dict[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` for `package` that imports `names[attr]` (a submodule, relative) on first use."""
    def __getattr__(attr: str):
        if attr not in names:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        value = getattr(importlib.import_module(names[attr], package), attr)
        importlib.import_module(package).__dict__[attr] = value
        return value

    return __getattr__
