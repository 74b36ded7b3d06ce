"""The house rules, as standing tests: imports point one way (models ← tasks ← flows, tasks → cluster,
cluster → nothing of ours), no circles between files or folders, the light modules stay light, modules
stay under 300 lines and functions under ~60, and no block of 6+ lines stands twice."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "tasks", "flows", "cluster")
ALLOWED = {"models": {"models"}, "tasks": {"tasks", "models", "cluster"}, "cluster": {"cluster"},
           "flows": {"flows", "tasks", "models", "cluster"}}
MAX_LINES, MAX_FUNCTION = 300, 60
LONG_OK = "# long:"  # a function may pass MAX_FUNCTION when its def line says why


def sources() -> list[Path]:
    """Our modules; `python -m flows` (flows/__main__.py) is an entry point above every layer."""
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                  if "configs" not in p.parts and p.name != "__main__.py")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module of ours that `path` imports, at module level or inside functions, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import module`
    ours = {m for m in found if m.split(".")[0] in PACKAGES}
    known = {module_name(p) for p in sources()}
    return {m for m in ours if m in known} - {name}


def graph(key) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in sources():
        src = key(module_name(path), path)
        for mod in imports(path):
            dst = key(mod, None)
            if dst != src:
                edges[src].add(dst)
    return edges


def folder(mod: str, path: Path | None) -> str:
    known = {module_name(p): p for p in sources()}
    p = path or known[mod]
    return ".".join(p.relative_to(ROOT).parent.parts)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_imports_point_one_way():
    wrong = [f"{module_name(p)} imports {m}" for p in sources() for m in imports(p)
             if m.split(".")[0] not in ALLOWED[module_name(p).split(".")[0]]]
    assert wrong == []


def test_no_circles_between_folders():
    assert cycles(graph(folder)) == []


def test_no_circles_between_files():
    def file_key(mod, path):
        return mod

    # a package's __init__ re-exports its modules: an edge into it stands for its modules, not a circle
    edges = graph(file_key)
    inits = {module_name(p) for p in sources() if p.name == "__init__.py"}
    edges = {k: {d for d in v if d not in inits or not d.startswith(k.rsplit(".", 1)[0])} for k, v in edges.items()
             if k not in inits}
    assert cycles(edges) == []


@pytest.mark.parametrize("module,heavy", [
    ("models", {"ray", "dask", "distributed", "prefect", "wandb", "optuna"}),
    ("tasks.spec", {"ray", "dask", "distributed", "prefect", "wandb", "optuna"}),
    # a sweep's driver: torch and scikit-learn load in the warm workers only (tasks/lazy.py), ~3-5 s of start-up
    ("flows.sweep, flows.cli.run, tasks.sweep.pool, tasks.sweep.trials, tasks.sweep.optimize",
     {"torch", "sklearn", "matplotlib", "wandb"}),
    ("flows.engines, tasks.runs.repro, tasks.train.plan, tasks.train.job", {"torch", "sklearn", "matplotlib"}),
    # a run's driver: the baselines are scored on Dask and the metrics are numpy (~1.2 s of scikit-learn); torch
    # loads in Ray Train's controller and workers, not in the driver that starts them (tasks/train/lean.py)
    ("flows.pipeline, tasks.train.ray_train, tasks.train.lean, tasks.runs", {"sklearn", "matplotlib", "torch"}),
])
def test_import_stays_light(module, heavy):
    code = (f"import json, sys; import {module}; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(heavy)!r}))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], f"import {module} pulls in heavy packages"


def test_a_sweeps_driver_imports_no_dataframe_library():
    """dask.dataframe and pandas load where rows are read (a Dask worker, the checks of an uncached source, the
    preprocessing of an entry not cached), not with the modules of a sweep's driver nor where a cached entry is
    reused (tasks/data/cache.py): 0.6 s and 0.25 s of its start-up (tasks.lazy.LazyModule)."""
    code = ("import sys; import flows.sweep, flows.cli.run, tasks.sweep.pool, tasks.sweep.trials, tasks.data, tasks.data.sources, "
            "tasks.data.cache; "
            "from tasks.data import Prepared, check_source; print(sorted({'dask.dataframe', 'pandas'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_modules_and_functions_stay_small():
    long_modules = [f"{p.relative_to(ROOT)}: {n}" for p in sources()
                    if (n := len(p.read_text().splitlines())) > MAX_LINES]
    long_functions = []
    for p in sources():
        lines = p.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION and LONG_OK not in lines[node.lineno - 1]:
                    long_functions.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: {size} lines")
    assert long_modules == [] and long_functions == []


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines that carry code: no blanks, comments, imports or lone punctuation; white space folded."""
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        s = " ".join(line.split())
        if not s or s.startswith(("#", "import ", "from ")) or all(c in "()[]{},:" for c in s):
            continue
        out.append((i, s))
    return out


def test_no_block_of_six_lines_stands_twice():
    seen: dict[tuple[str, ...], str] = {}
    twice = []
    for p in sources():
        lines = _code_lines(p)
        for k in range(len(lines) - 5):
            block = tuple(s for _, s in lines[k:k + 6])
            where = f"{p.relative_to(ROOT)}:{lines[k][0]}"
            if block in seen and not seen[block].startswith(f"{p.relative_to(ROOT)}:"):
                twice.append(f"{where} ~ {seen[block]}")
            seen.setdefault(block, where)
    assert twice == []


def test_no_two_test_modules_share_a_name():
    """Without __init__.py, pytest imports test modules by basename: two of one name stop the collection."""
    names = defaultdict(list)
    for p in (ROOT / "tests").rglob("test_*.py"):
        names[p.name].append(str(p.relative_to(ROOT)))
    assert {n: ps for n, ps in names.items() if len(ps) > 1} == {}


def test_a_spec_checks_without_torch():
    """The CLI validates a spec before any engine starts: model params come from models/params.py, not torch."""
    code = ("import json, sys; from tasks.spec_file import load_spec; "
            "load_spec('experiments/digits-cnn.yaml', ['model.params.dropout=0.2']); "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn', 'ray', 'prefect'})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
