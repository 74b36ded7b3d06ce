"""JSON that any reader can parse: NaN and inf are not JSON (Python writes them, browsers and jq refuse)."""
from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """A copy with every NaN or infinite float replaced by None (null in JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """json.dumps that never writes NaN or Infinity."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
