"""Reading offline W&B runs back from their files, as the tests check them."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path


def _core() -> Path | None:
    """The wandb-core binary the wandb package ships (found without importing wandb)."""
    spec = importlib.util.find_spec("wandb")
    core = Path(spec.origin).parent / "bin" / "wandb-core" if spec and spec.origin else None
    return core if core is not None and core.is_file() else None


def _inspect(path: Path, *flags: str, via: str = "auto") -> str:
    """`wandb leet inspect FLAGS PATH`'s output. The `wandb` command is a Python CLI that imports wandb (~1.4 s
    here, twice per run read) only to run wandb-core with these arguments: the same call made directly takes
    ~0.03 s and prints the same bytes. `via`: "core" (that call, or an error), "cli" (the public command), "auto"
    (the core, the command where the core's arguments no longer work)."""
    core = _core() if via != "cli" else None
    runs = [path] if path.suffix == ".wandb" else sorted(path.glob("run-*.wandb"))  # as the CLI finds it
    if core is not None and len(runs) == 1:
        proc = subprocess.run([str(core), "leet", "inspect", "--no-observability", *flags, "--run-file",
                               str(runs[0]), str(runs[0].parent.parent)], capture_output=True, text=True, timeout=60)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout
        if via == "core":
            raise RuntimeError(f"wandb-core leet inspect failed ({proc.returncode}): {proc.stderr[-2000:]}")
    elif via == "core":
        raise RuntimeError(f"no wandb-core ({core}) or not one run file in {path}")
    exe = Path(sys.executable).parent / "wandb"
    cmd = [str(exe) if exe.exists() else "wandb", "leet", "inspect", *flags, str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout


def read_run(path: str | Path, via: str = "auto") -> dict:
    """Read an offline run back from its .wandb file: config, summary, state, name, group, history (`via`: see
    _inspect)."""
    path = Path(path)
    out = _inspect(path, "--json", via=via)
    summary = json.loads(_inspect(path, "--summary", "--json", via=via))
    history, group = [], None
    for line in out.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("type") == "history":
            history.append(rec["history"]["item"])
        elif rec.get("type") == "run":
            group = rec["run"].get("run_group")
    return {**summary, "group": group, "history": history}
