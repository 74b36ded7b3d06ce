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


class LazyModule:
    """A module imported on its first attribute access: `pd = LazyModule("pandas")` in a module that a driver
    imports for a piece that never touches pandas (~0.25 s of a warm sweep's start on 2 cores)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        if attr.startswith("__") or "_name" not in self.__dict__:  # pickle's and copy's probes; half-unpickled
            raise AttributeError(attr)
        module = self.__dict__.get("_module")
        if module is None:
            module = self.__dict__["_module"] = importlib.import_module(self.__dict__["_name"])
        return getattr(module, attr)

    def __getstate__(self) -> dict:
        return {"_name": self.__dict__["_name"]}

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_name']!r}>"
