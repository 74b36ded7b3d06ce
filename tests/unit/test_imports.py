"""The light modules stay light: importing them must not drag in the distributed stack."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_after(module: str, watch: set[str]) -> list[str]:
    """Top-level packages from `watch` that are in sys.modules after `import module` in a fresh interpreter."""
    code = (f"import json, sys; import {module}; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(watch)!r}))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module,heavy", [
    ("models", {"ray", "dask", "distributed", "prefect", "wandb", "optuna"}),
    ("tasks.spec", {"ray", "prefect", "wandb", "optuna"}),
])
def test_import_stays_light(module, heavy):
    assert imported_after(module, heavy) == [], f"import {module} pulls in heavy packages"
