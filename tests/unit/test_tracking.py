"""tasks/tracking.py: a process's W&B runs skip W&B Launch's import while no Launch input is staged in it, and
apply them once one can be; an offline run's process starts none of W&B's product analytics (real W&B, offline,
in a fresh process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from wandb_files import read_run

SCRIPT = """
import json, sys
from pathlib import Path
from tasks import tracking

home, out = Path(sys.argv[1]), {}
run = tracking.start("p", "offline", home, name="first", group="g", config={"lr": 0.1})
run.log({"loss": 1.0})
run.finish()
out["launch_loaded"] = "wandb.sdk.launch" in sys.modules
out["run_dir"] = tracking.run_dir(run)
import threading
from wandb.analytics.opentelemetry import opentelemetry_proxy
out["analytics"] = {"exporters": "opentelemetry.exporter.otlp.proto.http" in sys.modules,
                    "threads": [t.name for t in threading.enumerate() if t.name.startswith("Otel")],
                    "proxy": opentelemetry_proxy.get_open_telemetry_proxy() is not None}

from wandb.sdk.launch.inputs import internal  # what staging a Launch input loads (wandb.launch.manage_*)

applied = []
apply = internal.StagedLaunchInputs.apply
internal.StagedLaunchInputs.apply = lambda self, r: applied.append(r.name) or apply(self, r)
run = tracking.start("p", "offline", home, name="second", group="g", config={})
run.finish()
out["applied"] = applied
print(json.dumps(out))
"""


def test_runs_skip_launchs_import_until_an_input_can_be_staged(tmp_path):
    # as a user runs it: the spec says offline, WANDB_MODE (which the test session sets) does not
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert not out["launch_loaded"]  # ~0.45 s of CPU in every process's first run, for nothing to apply
    logged = read_run(out["run_dir"])
    assert logged["state"] == "finished" and [h["loss"] for h in logged["history"]] == [1.0]
    assert logged["config"]["lr"] == 0.1
    assert out["applied"] == ["second"]  # with staging loaded, W&B's own step runs as before
    # an offline run's process builds no exporters of W&B's product analytics, which looked W&B's server up a
    # minute later (tracking.no_analytics_when_offline)
    assert out["analytics"] == {"exporters": False, "threads": [], "proxy": False}
