"""Package attributes imported on first use (PEP 562), so that a driver that needs one small piece of a
package does not import torch or scikit-learn with it: `import flows.sweep` took ~5 s of a sweep's
start-up on 2 cores importing them for pieces (fit_parallel, Tracking) that need neither."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
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



class _Deferred(types.ModuleType):
    """The stand-in `defer` puts in sys.modules: `import name` finds it (its __spec__ says it is not initializing),
    and the first attribute it lacks imports the real module in its place and is answered from it, as is every
    later one. A submodule import asks it for __path__, which imports the real package first. It has what a module
    has before its code runs (__spec__, __file__, ...), so that whoever probes those of every module finds them."""

    def __getattr__(self, attr: str):
        real = self.__dict__.get("_deferred_module")
        if real is None:
            name = self.__dict__["__name__"]
            if sys.modules.get(name) is self:
                del sys.modules[name]
            real = self.__dict__["_deferred_module"] = importlib.import_module(name)
        return getattr(real, attr)


def defer(name: str) -> bool:
    """Make `import name` (a top-level module nothing has imported yet) cost nothing until the module is used: the
    real import happens on the first attribute asked of it, by whoever uses it. For a module a library imports with
    itself for a feature conductor never uses: Optuna imports redis (and with it OpenTelemetry's metrics SDK),
    ~0.15 s of CPU in every process that imports Optuna, for its Redis journal backend. (importlib.util.LazyLoader
    does not do this: the import statement itself reads the module's __spec__, which runs it.) True when deferred;
    a module that is missing or imported already is left to a plain import."""
    if name in sys.modules or "." in name:
        return False
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    stand_in = _Deferred(name)
    # what the import system sets before a module runs, so that probes of every module in sys.modules (inspect's
    # getmodule asks each one for __file__; torch's import calls it) answer without importing this one
    stand_in.__spec__, stand_in.__loader__, stand_in.__package__ = spec, spec.loader, spec.parent
    if spec.has_location:
        stand_in.__file__, stand_in.__cached__ = spec.origin, spec.cached
    sys.modules[name] = stand_in
    return True
