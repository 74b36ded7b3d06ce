"""A killed run's leftovers (its staged `.tmp-*` directory, its Ray Train storage) are removed by the next
command; what a live process owns, and names it cannot read an owner from, are kept."""
from __future__ import annotations

import os
import subprocess
import sys

from tasks.staged import claim_ray_storage, clean_leftovers, staged


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_command_removes_what_a_killed_process_left(tmp_path):
    home, dead = tmp_path / "runs", dead_pid()
    killed = [home / f".tmp-cache-{dead}-aaaaaa", home / "digits" / f".tmp-20260101-{dead}-bbbbbb",
              home / "digits" / "sweeps" / "s" / f".tmp-t001-{dead}-cccccc"]
    kept = [home / "digits" / f".tmp-20260102-{os.getpid()}-dddddd", home / "digits" / ".tmp-old-eeeeee",
            home / "digits" / "20260101-000000-ffff"]
    for path in killed + kept:
        path.mkdir(parents=True)
    (claim_ray_storage(home, "digits-live") / "x").mkdir(parents=True)
    stale = claim_ray_storage(home, "digits-killed")
    (stale / "checkpoint").mkdir(parents=True)
    (home / ".ray_storage" / ".owners" / "digits-killed").write_text(str(dead))
    removed = clean_leftovers(home)
    assert sorted(removed) == sorted(killed + [stale])
    assert all(not p.exists() for p in killed + [stale]) and all(p.exists() for p in kept)
    assert (home / ".ray_storage" / "digits-live").exists()
    assert clean_leftovers(home) == [] and clean_leftovers(tmp_path / "nowhere") == []


def test_a_staged_directory_carries_its_owner(tmp_path):
    with staged(tmp_path / "out") as tmp:
        assert f"-{os.getpid()}-" in tmp.name and clean_leftovers(tmp_path) == []
    assert (tmp_path / "out").is_dir()
