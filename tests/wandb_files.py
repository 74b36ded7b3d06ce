"""Reading offline W&B runs back from their files, as the tests check them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def read_run(path: str | Path) -> dict:
    """Read an offline run back from its .wandb file: config, summary, state, name, group, history."""
    exe = Path(sys.executable).parent / "wandb"
    cmd = [str(exe) if exe.exists() else "wandb", "leet", "inspect", "--json", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    summary_cmd = cmd[:3] + ["--summary", "--json", str(path)]
    summary = json.loads(subprocess.run(summary_cmd, capture_output=True, text=True, check=True, timeout=60).stdout)
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
