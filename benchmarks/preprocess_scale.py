"""conductor's Dask preprocessing against plain pandas in one process, on the same CSV (issue 13, first goal).

  (a) pandas: read the CSV whole, draw the same split, fit on train (median impute, one-hot, clip at
      mean +- k sd, standard scale), write Parquet train/val/test/test_raw;
  (b) conductor: tasks.data.preprocess on a LocalCluster(processes=False, 1 worker, 2 threads) Client,
      cold cache (fresh CONDUCTOR_HOME); the cluster's start-up is timed apart.

The CSV is generated beforehand in 200,000-row chunks (timed apart). (a) draws __split__ itself with
conductor's rule (rng([seed, partition]) per Dask partition); the partition lengths come from (b)'s
Parquet metadata: bookkeeping, untimed. Checks: rows per split equal; category sets equal; medians within
BOUND (Dask's quantile is approximate); once (a) imputes with (b)'s medians, clip bounds and scaler sds
equal to 1e-9 (relative), scaler means and the output train features' means and sds to 1e-6 (TOL says
why). Exit 1 if not; the ratio goal (<= 1.2x) is only reported.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NUM, CAT, K, SEED, CHUNK = [f"n{i}" for i in range(10)], ["color", "city"], 4.0, 0, 200_000
TOL = {  # relative to max(|a|, |b|, size): size is the column's sd for the scaler, 1 for the output features
    "clip bounds (mean +- k sd, ddof 1)": 1e-9, "scaler sd (ddof 0)": 1e-9,
    # Dask sums each partition of a float32 column in float32: its mean is off by ~1e-7 (conductor's precision),
    # and the output features are float32 (6e-8 per value): those follow the scaler's mean
    "scaler mean": 1e-6, "output train feature mean": 1e-6, "output train feature sd": 1e-6}
BOUND = 0.01  # medians: Dask's median is within this fraction of the train rows (rank) of the exact one


def generate(path: Path, rows: int) -> None:
    rng = np.random.default_rng(SEED)
    colors = np.array([f"c{i:02d}" for i in range(12)])
    cities = np.array([f"city_{i}" for i in range(20)])
    loc, scale = rng.uniform(-5, 5, 10), rng.uniform(0.5, 3, 10)  # one distribution for every chunk
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        x = rng.normal(loc, scale, (n, 10)) + rng.exponential(1, (n, 10))
        x[rng.random((n, 10)) < 0.0005] *= 50  # outliers
        x[rng.random((n, 10)) < 0.05] = np.nan
        df = pd.DataFrame(x, columns=NUM)
        for c, vals, p in (("color", colors, 0.03), ("city", cities, 0.02)):
            df[c] = np.where(rng.random(n) < p, None, vals[rng.integers(0, len(vals), n)])
        df["label"] = (x[:, 0] + rng.normal(0, 2, n) > 0).astype(int)
        df.to_csv(path, mode="a" if start else "w", header=start == 0, index=False, float_format="%.6g")


def pandas_fit(train: pd.DataFrame, medians: dict | None = None) -> dict:
    """conductor's definitions: median and mode from raw train; clip = mean +- K sd (ddof 1) of raw train
    (NaN skipped); scale = mean and sd (ddof 0) of the imputed, clipped, encoded train columns."""
    mu, sd = train[NUM].mean(), train[NUM].std()
    fill = dict(medians) if medians else train[NUM].median().to_dict()
    cats = {c: sorted(train[c].dropna().unique().tolist()) for c in CAT}
    fill |= {c: train[c].value_counts().sort_index().idxmax() for c in CAT}
    st = {"fill": fill, "cats": cats, "clip": {c: (mu[c] - K * sd[c], mu[c] + K * sd[c]) for c in NUM}}
    enc = encode(train, st).astype("float32").astype("float64")  # conductor fits on its float32 transform
    st["center"], width = enc.mean(), enc.std(ddof=0)
    st["scale"] = width.where(width > 1e-12, 1.0).fillna(1.0)
    return st


def encode(df: pd.DataFrame, st: dict) -> pd.DataFrame:
    out = {c: df[c].fillna(st["fill"][c]).clip(*st["clip"][c]) for c in NUM}
    for c in CAT:
        s = df[c].fillna(st["fill"][c])
        out |= {f"{c}={v}": (s == v).astype("float64") for v in st["cats"][c]}
    return pd.DataFrame(out, index=df.index)


def model_rows(df: pd.DataFrame, st: dict) -> pd.DataFrame:
    x = ((encode(df, st) - st["center"]) / st["scale"]).astype("float32")
    x.columns = [f"x{i}" for i in range(x.shape[1])]
    return x.assign(y=df["label"].astype("int64").to_numpy(), __row__=df["__row__"].to_numpy())


def run_pandas(csv: Path, lengths: list[int], out: Path, seed=0, val=0.15, test=0.15):
    t0 = time.perf_counter()
    df = pd.read_csv(csv)
    df["__row__"] = np.arange(len(df), dtype="int64")
    u = np.concatenate([np.random.default_rng([seed, i]).random(n) for i, n in enumerate(lengths)])
    df["__split__"] = np.where(u < test, 2, np.where(u < test + val, 1, 0)).astype("int8")
    parts = {name: df[df["__split__"] == i] for i, name in enumerate(("train", "val", "test"))}
    st = pandas_fit(parts["train"])
    for name, part in parts.items():
        (out / name).mkdir(parents=True)
        model_rows(part, st).to_parquet(out / name / "part-0.parquet", index=False)
    (out / "test_raw").mkdir()
    parts["test"].drop(columns="__split__").to_parquet(out / "test_raw" / "part-0.parquet", index=False)
    return time.perf_counter() - t0, st, parts


def run_conductor(csv: Path, home: Path) -> tuple[float, float, object, dict]:
    from dask.utils import key_split
    from distributed import Client, LocalCluster, get_task_stream

    from tasks.data import preprocess
    from tasks.spec import Data

    data = Data.model_validate({"source": str(csv), "task": "classification", "target": "label", "split": {
        "val": 0.15, "test": 0.15, "seed": SEED}, "preprocessing": {
        "impute": "median", "categorical": "onehot", "clip_outliers": K, "scale": "standard"}})
    os.environ["CONDUCTOR_HOME"] = str(home)
    logging.getLogger("distributed").setLevel(logging.ERROR)  # p2p shuffle notices, one per value_counts
    t0 = time.perf_counter()
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        t1 = time.perf_counter()
        with get_task_stream(client) as ts:
            prepared = preprocess(data, home, log=lambda *_: None)
        t2 = time.perf_counter()
    tasks: dict[str, list] = {}
    for t in ts.data:  # per task name prefix: count, summed compute seconds
        name = key_split(t["key"])
        secs = sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
        tasks.setdefault(name, [0, 0.0])
        tasks[name][0] += 1
        tasks[name][1] += secs
    return t1 - t0, t2 - t1, prepared, tasks


def part_rows(d: Path) -> dict[int, int]:
    return {int(f.stem.split("-")[1]): pq.ParquetFile(f).metadata.num_rows for f in sorted(d.glob("*.parquet"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp, bad, off = Path(tmp), [], []
        csv = tmp / "table.csv"
        t0 = time.perf_counter()
        generate(csv, args.rows)
        t_gen, mb = time.perf_counter() - t0, csv.stat().st_size / 2**20
        start_s, cond_s, prep, tasks = run_conductor(csv, tmp / "home")
        p = prep.preprocessor
        splits = {s: part_rows(Path(prep.path(s))) for s in ("train", "val", "test")}
        parts = sorted(set().union(*splits.values()))
        lengths = [sum(splits[s].get(i, 0) for s in splits) for i in parts]  # bookkeeping, untimed
        pd_s, st, frames = run_pandas(csv, lengths, tmp / "pandas")

        counts = {s: len(frames[s]) for s in splits}
        if counts != p.counts:
            bad.append(f"rows per split: pandas {counts}, conductor {p.counts}")
        cats = {c: st["cats"][c] for c in CAT}
        if cats != p.categories:
            bad.append(f"categories: pandas {cats}, conductor {p.categories}")
        train = frames["train"]
        rank = {c: float((train[c] < p.impute["values"][c]).sum() / train[c].notna().sum() - 0.5) for c in NUM}
        worst = max(rank, key=lambda c: abs(rank[c]))
        if abs(rank[worst]) > BOUND:
            bad.append(f"median of {worst}: rank off by {rank[worst]:+.4f} > {BOUND}")
        dmed = max(abs(p.impute["values"][c] - st["fill"][c]) / (train[c].std()) for c in NUM)
        same = pandas_fit(train, {c: p.impute["values"][c] for c in NUM})  # (b)'s medians: exact comparison
        ours = model_rows(train, same).drop(columns=["y", "__row__"]).astype("float64")
        theirs = pd.read_parquet(prep.path("train")).sort_values("__row__")[ours.columns].astype("float64")
        sd = same["scale"]
        groups = {  # name: [(column, pandas, conductor, the size a difference is relative to)]
            "clip bounds (mean +- k sd, ddof 1)": [(c, a, b, abs(a)) for c in NUM
                                                   for a, b in zip(same["clip"][c], p.clip[c], strict=True)],
            "scaler sd (ddof 0)": [(c, same["scale"][c], p.scale["scale"][c], sd[c]) for c in p.columns],
            "scaler mean": [(c, same["center"][c], p.scale["center"][c], sd[c]) for c in p.columns],
            "output train feature mean": [(c, ours[c].mean(), theirs[c].mean(), 1.0) for c in ours],
            "output train feature sd": [(c, ours[c].std(), theirs[c].std(), 1.0) for c in ours]}
        table = []
        for g, rows in groups.items():
            rel = [(abs(a - b) / max(abs(a), abs(b), size, 1e-300), c) for c, a, b, size in rows]
            most, col = max(rel)
            table.append((g, len(rows), most, TOL[g], col))
            if most > TOL[g]:
                off.append(f"{g}: {col} off by {most:.2e} > {TOL[g]:g}")
        bad += off

    ratio = cond_s / pd_s
    print(f"\npreprocess_scale: {args.rows:,} rows x {len(NUM)} numeric + {len(CAT)} text columns + label, "
          f"CSV {mb:.0f} MB, {len(parts)} Dask partitions; {len(p.columns)} encoded columns\n")
    for label, secs in [("data generation (apart, in 200k-row chunks)", t_gen),
                        ("(a) pandas, one process: read, split, fit, transform, write", pd_s),
                        ("(b) conductor: Dask LocalCluster start-up (apart)", start_s),
                        ("(b) conductor: preprocess(), cold cache", cond_s)]:
        print(f"  {label:<62} {secs:7.2f} s")
    print("\n  (b)'s Dask tasks by name (count, compute seconds summed over 2 threads):")
    for name, (n, secs) in sorted(tasks.items(), key=lambda kv: -kv[1][1])[:8]:
        print(f"    {name:<40} {n:6d} {secs:8.1f} s")
    passes = tasks.get("read-csv", [0])[0] / max(1, len(parts))
    print(f"    -> {passes:.0f} passes over the CSV (read_csv tasks / partitions)")
    print(f"\n  rows per split: conductor {p.counts}, pandas {counts}")
    print(f"  medians: Dask's off the exact rank 0.5 by at most {abs(rank[worst]):.4f} ({worst}; bound {BOUND}), "
          f"{dmed:.4f} sd at most")
    print("  with conductor's medians, (a) against (b); difference relative to max(|a|, |b|, size):")
    print(f"    {'statistic':<36} {'n':>4} {'max diff':>9} {'tolerance':>9}  worst column")
    for g, n, most, tol, col in table:
        print(f"    {g:<36} {n:4d} {most:9.1e} {tol:9.0e}  {col}")
    print(f"\n  wall-time ratio conductor / pandas = {ratio:.2f}x (goal <= 1.2x: {'met' if ratio <= 1.2 else 'not met'})")
    print("  results: " + ("equal within the tolerances" if not bad else "DIFFER:\n    " + "\n    ".join(bad)))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
