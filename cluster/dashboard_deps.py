"""Ray's check for its dashboard's dependencies, answered from the disk instead of by importing them.

While the embedded Ray starts, `ray.init` asks `ray._private.utils.get_dashboard_dependency_error()` whether the
dashboard's dependencies are installed (its API server and agent then load their full modules, else `--minimal`
ones). Ray answers by importing them (`ray/dashboard/optional_deps.py`: aiohttp and aiohttp.web, aiohttp_cors,
gRPC, OpenCensus, OpenTelemetry's Prometheus exporter, prometheus_client, pydantic): ~0.2 s of CPU in the
command's main thread, inside ray.init, for modules the command never uses (the dashboard's own processes import
them again for themselves). `found_on_disk` gives the same answer for an installed package by finding each module
that file imports (importlib's finders, nothing executed); a module that is missing is Ray's own ImportError. Where
the file cannot be read or parsed, Ray's check runs as before.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import importlib.machinery
import importlib.util
import sys
from pathlib import Path


@functools.cache
def optional_deps() -> tuple[str, ...] | None:
    """The modules Ray's optional_deps.py imports, in its order; None where it cannot be read."""
    try:
        spec = importlib.util.find_spec("ray")
        path = Path(spec.origin).parent / "dashboard" / "optional_deps.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (AttributeError, ImportError, OSError, SyntaxError, TypeError, ValueError):
        return None
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return tuple(dict.fromkeys(names)) or None


def _found(name: str) -> bool:
    """Whether module `name` would be found, without importing it or its packages (a package's folders are
    passed to the finder of its submodules by hand: a namespace package's own list looks its parent up in
    sys.modules, where it is not)."""
    parts, folders = name.split("."), None
    for i, part in enumerate(parts):
        full = ".".join(parts[: i + 1])
        module = sys.modules.get(full)
        if module is not None:
            folders = list(getattr(module, "__path__", None) or []) or None
            continue
        if i and folders is None:
            return False  # a module, not a package, holds no submodules
        parents = folders if i else sys.path
        try:
            spec = importlib.util.find_spec(full) if i == 0 else importlib.machinery.PathFinder.find_spec(full, folders)
        except KeyError:  # a namespace package under one not imported: its path looks the parent up in sys.modules
            spec = importlib.machinery.ModuleSpec(full, None, is_package=True)
        if spec is None:
            return False
        if spec.submodule_search_locations is None:
            folders = None
        elif spec.origin in (None, "namespace"):  # a namespace package: its part's folder in each of its parent's
            folders = [str(Path(p) / part) for p in parents if (Path(p) / part).is_dir()]
        else:
            folders = list(spec.submodule_search_locations)
    return True


def found_on_disk() -> ImportError | None:
    """get_dashboard_dependency_error's answer, from the disk: None when every module is there."""
    for name in optional_deps() or ():
        try:
            if not _found(name):
                return ImportError(f"No module named {name!r}", name=name)
        except (ImportError, ValueError) as e:
            return ImportError(str(e), name=name)
    return None


@contextlib.contextmanager
def checked_on_disk():
    """While the embedded Ray starts: Ray's dependency check answered by `found_on_disk`, then Ray's own again."""
    try:
        import ray._private.utils as utils
    except ImportError:
        utils = None
    original = getattr(utils, "get_dashboard_dependency_error", None)
    if original is None or optional_deps() is None:
        yield
        return
    utils.get_dashboard_dependency_error = found_on_disk
    try:
        yield
    finally:
        utils.get_dashboard_dependency_error = original
