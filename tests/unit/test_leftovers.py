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


def test_ended_ray_sessions_under_the_home_go_but_the_newest_and_the_live_ones(tmp_path):
    """Ray never removes its session folders: CONDUCTOR_HOME/.ray keeps the newest ended ones and every one a
    running process names (a raylet's --session_dir=...), and loses the rest."""
    import time

    from cluster.connect import ray_temp_dir
    from tasks.staged import RAY_SESSIONS_KEPT, prune_ray_sessions

    home = tmp_path / "runs"
    names = [f"session_2026-01-0{d}_10-00-00_000000_{100 + d}" for d in range(1, 8)]
    for name in names:
        (home / ".ray" / name / "logs").mkdir(parents=True)
        old = time.time() - 3600
        os.utime(home / ".ray" / name, (old, old))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                             f"--session_dir={home / '.ray' / names[0]}"])
    try:
        prune_ray_sessions(home)
    finally:
        live.kill()
        live.wait()
    left = sorted(p.name for p in (home / ".ray").iterdir())
    assert left == [names[0], *names[-RAY_SESSIONS_KEPT:]]
    assert ray_temp_dir(tmp_path) == tmp_path / ".ray" or len(str(tmp_path / ".ray")) > 44
    assert ray_temp_dir(tmp_path / ("d" * 60)) is None  # too deep for Ray's Unix sockets: Ray's /tmp/ray


def test_a_killed_commands_pending_repro_record_goes_after_a_day(tmp_path):
    import time

    from tasks.staged import PENDING_MAX_S

    home = tmp_path / "runs"
    (home / ".repro").mkdir(parents=True)
    old, new = home / ".repro" / "20260101-000000-aaaa.json", home / ".repro" / "20260102-000000-bbbb.json"
    for path in (old, new):
        path.write_text("{}")
    then = time.time() - PENDING_MAX_S - 60
    os.utime(old, (then, then))
    clean_leftovers(home)
    assert [p.name for p in (home / ".repro").iterdir()] == [new.name]  # a running command's record stays
