"""Names a user gives on the command line that end up naming directories or picking runs: a study, a
run id. One rule for all of them, the spec's `name` rule, so none can climb out of runs/ ('../x'),
hide ('.x') or carry a separator."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UserError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_name(value: str, key: str) -> str:
    """`value` if it is 1-100 letters, digits, '_', '.', '-' starting with a letter or digit; else a
    UserError naming `key` (the option or argument it came from)."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise UserError(f"{key}: {value!r} must be letters, digits, '_', '.', '-' (at most 100, starting "
                        "with a letter or digit; it names a directory)")
    return value


def check_run_dir(run_dir: str | Path, key: str = "RUN_DIR") -> Path:
    """A run directory's last part is its run id, so it obeys the same rule ('.' and 'x/' mean the
    directory they name; symlinks are not followed, the name given is the one checked)."""
    run_id = Path(os.path.abspath(run_dir)).name
    check_name(run_id, f"{key} (its run id)")
    return Path(run_dir)
