"""Ray's dashboard dependency check answered from the disk (cluster/dashboard_deps.py): the modules of Ray's
optional_deps.py found without importing them, a missing one named as Ray's own check would."""
from __future__ import annotations

import json
import subprocess
import sys

from cluster import dashboard_deps
from conftest import ROOT

FRESH = """
import json, sys
from cluster.dashboard_deps import _found, found_on_disk, optional_deps
deps = optional_deps()
print(json.dumps({"deps": deps, "answer": repr(found_on_disk()),
                  "imported": sorted({d.split(".")[0] for d in deps} & {m.split(".")[0] for m in sys.modules}),
                  "namespace": _found("opentelemetry.exporter.prometheus"),
                  "missing": [_found(n) for n in ("opentelemetry.exporter.nope", "aiohttp.nope", "no_such_pkg",
                                                   "json.decoder.nope")]}))
"""


def test_the_check_finds_rays_list_without_importing_it():
    done = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"aiohttp", "grpc", "opentelemetry.exporter.prometheus", "prometheus_client"} <= set(got["deps"])
    assert got["answer"] == "None" and got["imported"] == [] and got["namespace"] is True
    assert got["missing"] == [False, False, False, False]


def test_a_missing_module_is_an_import_error_naming_it(monkeypatch):
    monkeypatch.setattr(dashboard_deps, "optional_deps", lambda: ("json", "no_such_module_here.sub"))
    error = dashboard_deps.found_on_disk()
    assert isinstance(error, ImportError) and error.name == "no_such_module_here.sub"


def test_rays_own_check_is_back_after_the_start():
    import ray._private.utils as utils

    before = utils.get_dashboard_dependency_error
    with dashboard_deps.checked_on_disk():
        assert utils.get_dashboard_dependency_error is dashboard_deps.found_on_disk
    assert utils.get_dashboard_dependency_error is before
