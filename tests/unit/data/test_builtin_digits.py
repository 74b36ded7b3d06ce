"""builtin:digits is read from the file scikit-learn ships, without importing scikit-learn: the frame must be the one
scikit-learn's own loader gives, value for value, dtype for dtype."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd

from conftest import ROOT
from tasks.data.builtin import builtin_frame


def test_digits_is_exactly_scikit_learns_frame():
    from sklearn.datasets import load_digits

    expected = load_digits(as_frame=True).frame.rename(columns={"target": "label"})
    pd.testing.assert_frame_equal(builtin_frame("digits", "classification"), expected, check_exact=True)


def test_reading_digits_imports_no_scikit_learn():
    code = ("import sys; from tasks.data.builtin import builtin_frame; f = builtin_frame('digits', 'classification'); "
            "assert f.shape == (1797, 65), f.shape; print(sorted(m for m in sys.modules if m.startswith('sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
