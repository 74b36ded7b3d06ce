"""Spec validation: every error path names the key and what is allowed, and all problems come at once."""
from __future__ import annotations

import pytest
import yaml

from tasks.errors import UserError
from tasks.spec import apply_overrides, validate
from tasks.spec_file import load_spec, parse_value

BASE = {
    "name": "t",
    "data": {"source": "builtin:digits", "target": "label", "shape": [1, 8, 8]},
    "model": {"name": "cnn", "params": {"channels": [8]}},
}


def with_(**changes):
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    return apply_overrides(raw, changes)


def error_of(raw) -> str:
    with pytest.raises(UserError) as e:
        validate(raw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_valid_spec_gets_defaults():
    spec = validate(BASE)
    assert spec.train.epochs == 20 and spec.train.workers == 2 and spec.train.use_gpu == "auto"
    assert spec.data.split.val == 0.15 and spec.data.preprocessing.scale == "standard"
    assert spec.model.params["channels"] == [8] and spec.model.params["kernel_size"] == 3
    assert spec.tracking.wandb.mode == "offline"


def test_unknown_key_is_named():
    assert "train.epoch: unknown key" in error_of(with_(**{"train.epoch": 3}))
    assert "data.preprocessing.scaling: unknown key" in error_of(with_(**{"data.preprocessing.scaling": "x"}))


def test_wrong_type_and_bad_values_are_named():
    assert "train.epochs" in error_of(with_(**{"train.epochs": "many"}))
    msg = error_of(with_(**{"train.lr": -1}))
    assert "train.lr" in msg and "greater than 0" in msg
    msg = error_of(with_(**{"train.optimizer": "adagrad"}))
    assert "train.optimizer" in msg and "'adam'" in msg and "'sgd'" in msg
    assert "data.preprocessing.impute" in error_of(with_(**{"data.preprocessing.impute": "zero"}))


def test_every_problem_is_reported_at_once():
    msg = error_of(with_(**{"train.epochs": 0, "train.batch_size": 0, "tracking.wandb.mode": "loud"}))
    assert "train.epochs" in msg and "train.batch_size" in msg and "tracking.wandb.mode" in msg


def test_unknown_model_lists_the_registry():
    msg = error_of(with_(**{"model.name": "transformer"}))
    assert "unknown model 'transformer'" in msg and "'cnn'" in msg and "'vae'" in msg


def test_model_params_are_validated_by_the_family():
    msg = error_of(with_(**{"model.params": {"channels": [8], "dropout": 2}}))
    assert "model.params.dropout" in msg
    assert "model.params.depth" in error_of(with_(**{"model.params": {"depth": 3}}))


def test_cross_field_checks():
    assert "data.target: required" in error_of(with_(**{"data.target": None}))
    raw = with_(**{"data.task": "generative"})
    assert "generative task has no target" in error_of(raw)
    assert "unknown builtin 'mnist'" in error_of(with_(**{"data.source": "builtin:mnist"}))
    assert "val + test" in error_of(with_(**{"data.split": {"val": 0.5, "test": 0.45}}))
    assert "name" in error_of(with_(name="../escape"))


def test_missing_required_sections():
    msg = error_of({"name": "x"})
    assert "data: required" in msg and "model: required" in msg


def test_sweep_space_dimensions():
    raw = with_(sweep={"space": {"train.lr": {"low": 1, "high": 0.1}}})
    assert "sweep.space.train.lr: low (1) must not exceed high (0.1)" in error_of(raw)
    raw = with_(sweep={"space": {"train.lr": {"low": 0, "high": 1, "log": True}}})
    assert "log scale needs low > 0" in error_of(raw)


def test_overrides_and_values(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(BASE))
    spec = load_spec(path, ["train.lr=0.01", "model.params.channels=[4, 8]", "train.early_stopping={patience: 2}"])
    assert spec.train.lr == 0.01 and spec.model.params["channels"] == [4, 8]
    assert spec.train.early_stopping.patience == 2
    assert parse_value("true") is True and parse_value("0.5") == 0.5
    with pytest.raises(UserError, match="expected key=value"):
        load_spec(path, ["train.lr"])
    with pytest.raises(UserError, match="train.epochs"):
        load_spec(path, ["train.epochs=-2"])


def test_missing_and_broken_spec_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_spec(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="expected a mapping"):
        load_spec(lst)
