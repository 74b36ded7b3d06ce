"""Names from the command line (a study, a run id) obey the spec's `name` rule: nothing that climbs out of
runs/, hides, or carries a separator, and the error names the option it came from."""
from __future__ import annotations

import pytest

from tasks.errors import UserError
from tasks.names import check_name, check_run_dir

GOOD = ["a", "digits-cnn", "churn_smoke.v2", "20260101-120000-beef", "A" * 100]
BAD = ["", "../x", "..", ".hidden", "-flag", "a/b", "a\\b", "with space", "x" * 101, "é", "a\nb", "/abs", "_x"]


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass(name):
    assert check_name(name, "--study") == name


@pytest.mark.parametrize("name", BAD)
def test_bad_names_are_refused_naming_the_option(name):
    with pytest.raises(UserError, match=r"^--study: .* must be letters, digits"):
        check_name(name, "--study")


def test_run_dir_is_checked_by_its_run_id(tmp_path, monkeypatch):
    good = tmp_path / "exp" / "20260101-120000-beef"
    assert check_run_dir(good) == good
    assert check_run_dir(f"{good}/") == good  # a trailing slash names the same directory
    monkeypatch.chdir(tmp_path)
    assert check_run_dir("exp/20260101-120000-beef/../20260101-120000-beef")
    with pytest.raises(UserError, match=r"^RUN_DIR \(its run id\): 'bad id' must be"):
        check_run_dir(tmp_path / "exp" / "bad id")
    with pytest.raises(UserError, match="RUN_DIR"):
        check_run_dir(tmp_path / "exp" / ".hidden")
