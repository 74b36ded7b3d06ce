"""Property: whatever YAML a user writes and whatever `--set` values they pass, the spec loader either
gives a Spec or raises UserError (one line, exit 2 in the CLI) — never another exception, a traceback."""
from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.errors import UserError
from tasks.spec import Spec
from tasks.spec_file import load_spec

KEYS = ["name", "data", "model", "train", "sweep", "tracking", "source", "target", "task", "params", "hidden",
        "lr", "epochs", "seed", "split", "val", "test", "space", "low", "high", "step", "log", "choices",
        "metric", "direction", "shape", "window", "horizon", "workers", "wandb", "mode", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["builtin:digits", "mlp", "cnn", "classification",
                                                           "val/loss", "maximize", "label", ".inf"]))
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
                     max_leaves=25)
VALID = {"name": "fuzz", "data": {"source": "builtin:digits", "target": "label"}, "model": {"name": "mlp"}}
set_keys = st.one_of(st.sampled_from(["train.lr", "model.params.hidden", "data.split.val", "name", "sweep.space.x",
                                      "data", "train", "", ".", "a..b", "train.lr.x"]), st.text(max_size=10))
set_items = st.lists(st.tuples(set_keys, st.text(max_size=15)).map(lambda kv: f"{kv[0]}={kv[1]}")
                     | st.text(max_size=15), max_size=3)


def load(tmp_path, text: str, sets: list[str]):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # lone surrogates make bytes that are not UTF-8
    try:
        return load_spec(path, sets)
    except UserError as e:
        assert "\n" not in str(e).strip(), str(e)
        return None


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees, sets=set_items)
def test_random_yaml_trees_never_raise_anything_but_user_error(tmp_path, tree, sets):
    out = load(tmp_path, yaml.safe_dump(tree, allow_unicode=True), sets)
    assert out is None or isinstance(out, Spec)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=st.dictionaries(st.sampled_from(KEYS), trees, max_size=3), sets=set_items)
def test_random_changes_to_a_valid_spec_never_raise_anything_but_user_error(tmp_path, change, sets):
    out = load(tmp_path, yaml.safe_dump({**VALID, **change}, allow_unicode=True), sets)
    assert out is None or isinstance(out, Spec)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_random_text_never_raises_anything_but_user_error(tmp_path, text):
    load(tmp_path, text, [])
