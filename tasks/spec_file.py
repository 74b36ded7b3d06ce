"""Reading a spec: the YAML file and the `--set key=value` overrides, each mistake named in one line."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .spec import Spec, apply_overrides, validate

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class _UniqueKeys(yaml.SafeLoader):
    """YAML keeps the last of two equal keys without a word; a spec with `lr` twice is a mistake."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (line {key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars or flow collections: 0.01, true, [16, 32], {patience: 3}."""
    return yaml.safe_load(text) if text != "" else ""


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`["train.lr=0.01", ...]` -> `{"train.lr": 0.01}`; a key that is not a dotted name, or a value
    that is not YAML, is named."""
    pairs: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value, e.g. train.lr=0.01")
        key, text = (part.strip() for part in item.split("=", 1))
        if not KEY.fullmatch(key):
            raise UserError(f"--set {item!r}: {key!r} is not a spec key; write dotted names such as "
                            "train.lr or model.params.hidden")
        try:
            pairs[key] = parse_value(text)
        except yaml.YAMLError as e:
            raise UserError(f"--set {key}: {text!r} is not a YAML value ({_first_line(e)}); "
                            "quote text, write lists as [16, 32]") from None
    return pairs


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"spec file {str(path)!r} not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"{path}: not UTF-8 text (byte {data[e.start]:#04x} on line {line}); "
                        "save the spec as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeys)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({_first_line(e)})") from None
    if raw is None:
        raise UserError(f"{path}: the file is empty; a spec needs name, data and model")
    return raw


def _first_line(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{problem}, line {mark.line + 1}" if mark is not None else problem


def load_spec(path: str | Path, overrides: list[str] | dict | None = None) -> Spec:
    """Read a YAML spec, apply `key=value` overrides, validate; raises UserError."""
    path = Path(path)
    raw = read_yaml(path)
    if isinstance(overrides, list):
        overrides = parse_sets(overrides)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of keys (name, data, model, ...), got a YAML "
                        f"{type(raw).__name__}")
    if overrides:
        raw = apply_overrides(raw, overrides)
    return validate(raw, str(path))
