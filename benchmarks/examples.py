"""Every example of experiments/ at full size through `conductor run`, against the figure the brief asks
of it, with the oracle computed on the same split (least squares, scikit-learn's logistic regression,
the persistence forecast, the mean image)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.data import Preprocessor  # noqa: E402


def run(name: str, home: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "flows", "run", str(ROOT / "experiments" / f"{name}.yaml"), "--json"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "CONDUCTOR_HOME": str(home)})
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def split(summary: dict, home: Path, name: str):
    prep = Preprocessor.load(Path(summary["run_dir"]))
    return pd.read_parquet(home / ".cache" / prep.fingerprint / name), prep


def xs(frame):
    return frame.filter(regex=r"^x\d+$").to_numpy()


def main() -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import accuracy_score, r2_score

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "runs"
        for name in ("diabetes-linear", "breast-cancer-logistic", "digits-mlp", "digits-cnn", "sunspots-lstm",
                     "digits-vae"):
            s = run(name, home)
            m = s["metrics"]
            if name == "diabetes-linear":
                (tr, state), (te, _) = split(s, home, "train"), split(s, home, "test")
                ts = state.target_scale
                ls = LinearRegression().fit(xs(tr), tr["y"])
                oracle = r2_score(te["y"] * ts["scale"] + ts["center"], ls.predict(xs(te)) * ts["scale"] + ts["center"])
                rows.append((name, "test/r2", m["test/r2"], f"within 0.02 of least squares {oracle:.4f}",
                             abs(m["test/r2"] - oracle) <= 0.02, s["duration_s"]))
            elif name == "breast-cancer-logistic":
                (tr, _), (te, _) = split(s, home, "train"), split(s, home, "test")
                sk = accuracy_score(te["y"], LogisticRegression(max_iter=5000).fit(xs(tr), tr["y"]).predict(xs(te)))
                rows.append((name, "test/accuracy", m["test/accuracy"], f">= scikit-learn {sk:.4f} - 0.01",
                             m["test/accuracy"] >= sk - 0.01, s["duration_s"]))
            elif name == "digits-mlp":
                rows.append((name, "test/accuracy", m["test/accuracy"], ">= 0.96", m["test/accuracy"] >= 0.96, s["duration_s"]))
            elif name == "digits-cnn":
                rows.append((name, "test/accuracy", m["test/accuracy"], ">= 0.97", m["test/accuracy"] >= 0.97, s["duration_s"]))
            elif name == "sunspots-lstm":
                p = m["test/persistence_r2"]
                rows.append((name, "test/r2", m["test/r2"], f">= 0.75 and > persistence {p:.4f}",
                             m["test/r2"] >= 0.75 and m["test/r2"] > p, s["duration_s"]))
            else:
                base = m["test/mean_image_mse"]
                rows.append((name, "test/recon_mse", m["test/recon_mse"], f"<= half the mean image's {base:.4f}",
                             m["test/recon_mse"] <= base / 2, s["duration_s"]))
    print(f"\n{'example':<24} {'metric':<15} {'value':>8}  {'target':<40} {'ok':<4} {'wall s':>7}")
    for name, metric, value, target, ok, secs in rows:
        print(f"{name:<24} {metric:<15} {value:>8.4f}  {target:<40} {'yes' if ok else 'NO':<4} {secs:>7.1f}")
    if not all(r[4] for r in rows):
        raise SystemExit("an example missed its figure")
    np.random.seed(0)


if __name__ == "__main__":
    main()
