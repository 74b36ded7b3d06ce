"""conductor's Dask preprocessing against plain pandas in one process, on the same CSV (issue 13, first goal).

  (a) pandas: read the CSV whole, draw the same split, fit on train (median impute, one-hot, clip at
      mean +- k sd, standard scale), write Parquet train/val/test/test_raw;
  (b) conductor: tasks.data.preprocess on a LocalCluster(processes=False, 1 worker, 2 threads) Client,
      cold cache (fresh CONDUCTOR_HOME); the cluster's start-up is timed apart.

The CSV is generated beforehand in 200,000-row chunks (timed apart). (a) draws __split__ itself with
conductor's rule (rng([seed, partition]) per Dask partition); the partition lengths come from (b)'s
Parquet metadata: bookkeeping, untimed. Checks: rows per split equal; category sets equal; medians within
BOUND (Dask's quantile is approximate); once (a) imputes with (b)'s medians, clip bounds, scaler means and sds
equal to 1e-9 (relative), the output train features' means and sds to 1e-6 (float32 outputs; TOL says
why). Exit 1 if not; the ratio goal (<= 1.2x) is only reported.

--out-of-core (issue 13, second goal; not in `make bench`: ~25 min on 2 cores, of which preprocess() ~8): a data
set written beforehand in files of --file-rows rows (~17 MB of CSV each; 0: one file, read in 16 MB partitions,
tasks/data/sources.py CSV_BLOCK: a block costs a worker ~11x its size, and at 64 MB the nanny killed workers)
until its size as pandas frames (memory_usage(deep=True), summed as written)
is --factor (3) x the memory limits of the Dask workers together: --workers (2) processes of --threads (1)
thread(s), --worker-memory (768) MiB each, the nanny on with its default thresholds. preprocess() of a 1 MB file,
then of the data set, through a Client of that cluster, the RSS of this process and every descendant summed
every 0.2 s (tests/rss_tree.py). Reported: s per GB, the peak against 1.2 x the limits + the 1 MB file's peak
(met or not: reported, not an exit status), pauses, spilled bytes, and what the nanny said. Exit 1 when the
nanny restarted a worker or pandas differs: the whole data set read in chunks, two passes (moments merged
chunk by chunk), with the checks and TOL above; every row's split against conductor's rule. Then (unless
--no-train) `conductor run` of 1 epoch on the cached preprocessing, Ray's object store capped (--object-store),
and `conductor predict` of the run on the whole data set to one Parquet file, each with its process tree's peak.
No flag: the in-memory part only (as `make bench` runs it); --all: both.
"""
from __future__ import annotations

import argparse
import json
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
sys.path.insert(0, str(ROOT / "tests"))  # rss_tree: the process-tree RSS sampler the tests use too
NUM, CAT, K, SEED, CHUNK = [f"n{i}" for i in range(10)], ["color", "city"], 4.0, 0, 200_000
TOL = {  # relative to max(|a|, |b|, size): size is the column's sd for the scaler, 1 for the output features
    "clip bounds (mean +- k sd, ddof 1)": 1e-9, "scaler sd (ddof 0)": 1e-9,
    # conductor's scaler means are float64 means of its float32 encoded values (issue 13; Dask's float32 sums per
    # partition were off by ~1e-7); the output features are float32 (6e-8 per value)
    "scaler mean": 1e-9, "output train feature mean": 1e-6, "output train feature sd": 1e-6}
BOUND = 0.01  # medians: Dask's median is within this fraction of the train rows (rank) of the exact one


def chunks(sizes):
    """Frames of the given sizes, drawn one after another from one distribution (seeded)."""
    rng = np.random.default_rng(SEED)
    colors = np.array([f"c{i:02d}" for i in range(12)])
    cities = np.array([f"city_{i}" for i in range(20)])
    loc, scale = rng.uniform(-5, 5, 10), rng.uniform(0.5, 3, 10)  # one distribution for every chunk
    for n in sizes:
        x = rng.normal(loc, scale, (n, 10)) + rng.exponential(1, (n, 10))
        x[rng.random((n, 10)) < 0.0005] *= 50  # outliers
        x[rng.random((n, 10)) < 0.05] = np.nan
        df = pd.DataFrame(x, columns=NUM)
        for c, vals, p in (("color", colors, 0.03), ("city", cities, 0.02)):
            df[c] = np.where(rng.random(n) < p, None, vals[rng.integers(0, len(vals), n)])
        df["label"] = (x[:, 0] + rng.normal(0, 2, n) > 0).astype(int)
        yield df


def generate(path: Path, rows: int) -> None:
    for i, df in enumerate(chunks(min(CHUNK, rows - start) for start in range(0, rows, CHUNK))):
        df.to_csv(path, mode="a" if i else "w", header=i == 0, index=False, float_format="%.6g")


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


def in_memory(args) -> tuple[list[str], list[str]]:
    """(a) against (b) on one CSV of --rows rows: the summary's lines, and what differs."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp, bad = Path(tmp), []
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
        table, off = compare(groups)
        bad += off

    ratio = cond_s / pd_s
    out = [f"in memory: {args.rows:,} rows x {len(NUM)} numeric + {len(CAT)} text columns + label, "
           f"CSV {mb:.0f} MB, {len(parts)} Dask partitions; {len(p.columns)} encoded columns", ""]
    for label, secs in [("data generation (apart, in 200k-row chunks)", t_gen),
                        ("(a) pandas, one process: read, split, fit, transform, write", pd_s),
                        ("(b) conductor: Dask LocalCluster start-up (apart)", start_s),
                        ("(b) conductor: preprocess(), cold cache", cond_s)]:
        out.append(f"  {label:<62} {secs:7.2f} s")
    out.append("\n  (b)'s Dask tasks by name (count, compute seconds summed over 2 threads):")
    for name, (n, secs) in sorted(tasks.items(), key=lambda kv: -kv[1][1])[:8]:
        out.append(f"    {name:<40} {n:6d} {secs:8.1f} s")
    passes = tasks.get("read-csv", [0])[0] / max(1, len(parts))
    out.append(f"    -> {passes:.0f} passes over the CSV (read_csv tasks / partitions)")
    out.append(f"\n  rows per split: conductor {p.counts}, pandas {counts}")
    out.append(f"  medians: Dask's off the exact rank 0.5 by at most {abs(rank[worst]):.4f} ({worst}; bound {BOUND}), "
               f"{dmed:.4f} sd at most")
    out.append("  with conductor's medians, (a) against (b); difference relative to max(|a|, |b|, size):")
    out += tol_table(table)
    out.append(f"\n  wall-time ratio conductor / pandas = {ratio:.2f}x (goal <= 1.2x: {'met' if ratio <= 1.2 else 'not met'})")
    out.append("  results: " + ("equal within the tolerances" if not bad else "DIFFER:\n    " + "\n    ".join(bad)))
    return out, bad


def tol_table(table: list[tuple]) -> list[str]:
    out = [f"    {'statistic':<36} {'n':>4} {'max diff':>9} {'tolerance':>9}  worst column"]
    return out + [f"    {g:<36} {n:4d} {most:9.1e} {tol:9.0e}  {col}" for g, n, most, tol, col in table]


def compare(groups: dict) -> tuple[list[tuple], list[str]]:
    """{statistic: [(column, pandas, conductor, size)]} -> the table's rows, and what is off by more than TOL."""
    table, off = [], []
    for g, rows in groups.items():
        rel = [(abs(a - b) / max(abs(a), abs(b), size, 1e-300), c) for c, a, b, size in rows]
        most, col = max(rel)
        table.append((g, len(rows), most, TOL[g], col))
        if most > TOL[g]:
            off.append(f"{g}: {col} off by {most:.2e} > {TOL[g]:g}")
    return table, off


# ------------------------------------------------------------------ out of core (issue 13, second goal)
FILE_ROWS = 200_000  # rows per file of the out-of-core data set: ~17 MB of CSV, one Dask partition each
BASE_ROWS = 12_000  # the baseline's file: ~1 MB
NANNY_LOGGERS = ("distributed.nanny", "distributed.nanny.memory")


def ooc_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--workers", type=int, default=2, help="out of core: Dask worker processes")
    ap.add_argument("--threads", type=int, default=1, help="out of core: threads per worker")
    ap.add_argument("--worker-memory", type=int, default=768, help="out of core: each worker's memory limit, MiB")
    ap.add_argument("--factor", type=float, default=3.0,
                    help="out of core: the data set's size as pandas frames over the workers' limits together")
    ap.add_argument("--file-rows", type=int, default=FILE_ROWS, help="out of core: rows per CSV file (0: one file)")
    ap.add_argument("--object-store", type=int, default=512, help="out of core: Ray's object store for training, MiB")
    ap.add_argument("--no-train", action="store_true", help="out of core: preprocessing only (no run, no predict)")


def write_files(folder: Path, target: float, file_rows: int) -> tuple[int, int, int]:
    """The chunks() distribution written as CSV until the frames' pandas size (memory_usage(deep=True), summed
    as they are written) reaches `target` bytes: part-NNNNN.csv of file_rows rows each, or one table.csv
    (file_rows 0) appended in CHUNK-row chunks. Numbers are rounded to 4 decimals and written by pyarrow (a
    tenth of to_csv's time). Returns (rows, bytes as pandas frames, bytes of CSV)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    folder.mkdir(parents=True)
    rows = size = 0
    one = folder / "table.csv"
    for i, df in enumerate(chunks(iter(lambda: file_rows or CHUNK, None))):
        if rows and size >= target:
            break
        df[NUM] = df[NUM].round(4)
        table = pa.Table.from_pandas(df, preserve_index=False)
        if file_rows:
            pacsv.write_csv(table, folder / f"part-{i:05d}.csv")
        else:
            with open(one, "ab") as f:
                pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=i == 0))
        rows, size = rows + len(df), size + int(df.memory_usage(deep=True).sum())
    return rows, size, sum(f.stat().st_size for f in folder.glob("*.csv"))


class NannySays(logging.Handler):
    """The nanny's words when it kills (over 95% of its memory limit) or restarts its worker."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.said: list[str] = []

    def emit(self, record):
        if "estart" in (text := record.getMessage()) or "exceeded" in text:
            self.said.append(text)


def worker_state(dask_worker) -> dict:
    """Run on each worker: its pid, RSS, and what its spill buffer wrote to disk."""
    import psutil

    spilled = sum(v for (label, unit), v in getattr(dask_worker.data, "cumulative_metrics", {}).items()
                  if "write" in str(label) and unit == "bytes")
    return {"pid": os.getpid(), "rss": psutil.Process().memory_info().rss, "spilled": spilled}


def ooc_preprocess(args, tmp: Path, source: str, base_source: str) -> dict:
    """preprocess() of the 1 MB file, then of the data set, on a LocalCluster of worker processes, each timed
    and its process tree's RSS sampled; what the nanny said, the workers' pids before and after."""
    from distributed import Client, LocalCluster
    from rss_tree import TreeRSS

    from tasks.data import preprocess

    loggers, nanny = [logging.getLogger(n) for n in NANNY_LOGGERS], NannySays()
    for lg in loggers:  # distributed.nanny.memory's records reach the handler through distributed.nanny
        lg.setLevel(logging.WARNING)
    loggers[0].addHandler(nanny)
    got = {}
    with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads, processes=True,
                      memory_limit=f"{args.worker_memory}MiB", dashboard_address=":0",
                      local_directory=str(tmp / "dask")) as cluster, Client(cluster) as client:
        with TreeRSS() as base:
            preprocess(ooc_data(base_source), tmp / "home-base", log=lambda *_: None)
        before = client.run(worker_state)
        t0 = time.perf_counter()
        with TreeRSS() as rss:
            try:
                got["prepared"] = preprocess(ooc_data(source), tmp / "home", log=print)
            except Exception as e:  # noqa: BLE001 - a killed worker (KilledWorker) is a result to report
                got["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
        got["wall"] = time.perf_counter() - t0
        try:
            after, logs = client.run(worker_state), client.get_worker_logs()
        except Exception:  # noqa: BLE001 - a worker mid-restart
            after, logs = {}, {}
    loggers[0].removeHandler(nanny)
    restarted = [a for a in before if after.get(a, {}).get("pid") != before[a]["pid"]] + \
        [a for a in after if a not in before]
    got |= {"base": base, "rss": rss, "nanny": nanny.said, "restarted": restarted, "after": after,
            "paused": sum("Pausing worker" in msg for lines in logs.values() for _, msg in lines)}
    return got


def ooc_data(source: str):
    from tasks.spec import Data

    return Data.model_validate(ooc_spec(source)["data"])


def ooc_spec(source: str) -> dict:
    return {"name": "ooc-bench", "data": {
        "source": source, "task": "classification", "target": "label",
        "split": {"val": 0.15, "test": 0.15, "seed": SEED},
        "preprocessing": {"impute": "median", "categorical": "onehot", "clip_outliers": K, "scale": "standard"}},
        "model": {"name": "mlp", "params": {"hidden": [32], "dropout": 0.0}},
        "train": {"epochs": 1, "workers": 1, "batch_size": 4096, "lr": 0.01, "early_stopping": None}}


class Moments:
    """Count, mean and sum of squared deviations of each column, merged chunk by chunk (Chan et al.)."""

    def __init__(self):
        self.n = self.mean = self.m2 = self.columns = None

    def add(self, x: pd.DataFrame) -> None:
        n, mean = x.count().to_numpy("float64"), x.mean().fillna(0.0).to_numpy()
        m2 = ((x - mean) ** 2).sum().to_numpy()
        if self.n is None:
            self.n, self.mean, self.m2, self.columns = n, mean, m2, list(x.columns)
            return
        total = self.n + n
        share = np.divide(n, total, out=np.zeros_like(total), where=total > 0)
        delta = mean - self.mean
        self.mean, self.m2 = self.mean + delta * share, self.m2 + m2 + delta ** 2 * self.n * share
        self.n = total

    def means(self) -> pd.Series:
        return pd.Series(self.mean, self.columns)

    def sds(self, ddof: int) -> pd.Series:
        return pd.Series(np.sqrt(self.m2 / (self.n - ddof)), self.columns)


def csv_chunks(folder: Path):
    for f in sorted(folder.glob("*.csv")):
        yield from pd.read_csv(f, chunksize=CHUNK)


def split_of_rows(prep_dir: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's split (0 train, 1 val, 2 test): by conductor's rule (rng([seed, partition]) over the
    partitions' lengths, bookkeeping from the Parquet metadata as in the in-memory part), and as conductor's
    output holds it (the __row__ of each split's Parquet, read file by file)."""
    splits = {s: part_rows(prep_dir / s) for s in ("train", "val", "test")}
    parts = sorted(set().union(*splits.values()))
    u = np.concatenate([np.random.default_rng([SEED, i]).random(sum(splits[s].get(i, 0) for s in splits))
                        for i in parts])
    rule = np.where(u < 0.15, 2, np.where(u < 0.3, 1, 0)).astype("int8")
    held = np.full(rows, -1, dtype="int8")
    for k, s in enumerate(("train", "val", "test")):
        for f in sorted((prep_dir / s).glob("*.parquet")):
            held[pq.read_table(f, columns=["__row__"]).column(0).to_numpy()] = k
    return rule, held


def raw_pass(folder: Path, split: np.ndarray, medians: dict) -> dict:
    """pandas, chunk by chunk over the whole data set: rows, size as read, and the train rows' moments,
    category counts, class counts and ranks of conductor's medians."""
    mom, below, known, start, size = Moments(), pd.Series(0, NUM), pd.Series(0, NUM), 0, 0
    counts = {c: pd.Series(dtype="int64") for c in [*CAT, "label"]}
    for df in csv_chunks(folder):
        size += int(df.memory_usage(deep=True).sum())
        train = df[split[start:start + len(df)] == 0]
        start += len(df)
        mom.add(train[NUM])
        below += pd.Series({c: int((train[c] < medians[c]).sum()) for c in NUM})
        known += train[NUM].notna().sum()
        for c in counts:
            counts[c] = counts[c].add(train[c].value_counts(), fill_value=0)
    return {"rows": start, "size": size, "moments": mom, "rank": (below / known - 0.5).to_dict(), "counts": counts}


def encoded_pass(folder: Path, split: np.ndarray, st: dict, scaler: dict) -> tuple[Moments, Moments]:
    """pandas, chunk by chunk: moments of the train rows encoded (st, float32 as conductor fits them), and of
    the model rows that conductor's scaler makes of them (the output's features)."""
    enc_m, out_m, start = Moments(), Moments(), 0
    center, scale = pd.Series(scaler["center"]), pd.Series(scaler["scale"])
    for df in csv_chunks(folder):
        train = df[split[start:start + len(df)] == 0]
        start += len(df)
        enc = encode(train, st).astype("float32").astype("float64")
        enc_m.add(enc)
        x = ((enc - center[enc.columns]) / scale[enc.columns]).astype("float32").astype("float64")
        x.columns = [f"x{i}" for i in range(x.shape[1])]
        out_m.add(x)
    return enc_m, out_m


def parquet_moments(d: Path) -> Moments:
    mom = Moments()
    for f in sorted(d.glob("*.parquet")):
        mom.add(pq.read_table(f).to_pandas().filter(regex=r"^x\d+$").astype("float64"))
    return mom


def ooc_verify(folder: Path, prep_dir: Path, p, rows: int) -> tuple[list[str], list[str], int]:
    """conductor's statistics against pandas on the whole data set, read in chunks (two passes)."""
    bad = []
    rule, held = split_of_rows(prep_dir, rows)
    counts = {s: int((rule == k).sum()) for k, s in enumerate(("train", "val", "test"))}
    if counts != p.counts or len(rule) != rows:
        bad.append(f"rows per split: pandas {counts} of {len(rule)}, conductor {p.counts} of {rows}")
    elif not (rule == held).all():
        bad.append(f"rows in another split than the rule's: {int((rule != held).sum())}")
    raw = raw_pass(folder, rule, p.impute["values"])
    cats = {c: sorted(raw["counts"][c].index) for c in CAT}
    modes = {c: raw["counts"][c].sort_index().idxmax() for c in CAT}
    labels = {int(k): int(v) for k, v in raw["counts"]["label"].items()}
    for what, ours, theirs in [("categories", cats, p.categories), ("modes", modes, {c: p.impute["values"][c] for c in CAT}),
                               ("class counts", labels, dict(zip(p.classes, p.class_counts, strict=True)))]:
        if ours != theirs:
            bad.append(f"{what}: pandas {ours}, conductor {theirs}")
    worst = max(NUM, key=lambda c: abs(raw["rank"][c]))
    if abs(raw["rank"][worst]) > BOUND:
        bad.append(f"median of {worst}: rank off by {raw['rank'][worst]:+.4f} > {BOUND}")
    mu, sd = raw["moments"].means(), raw["moments"].sds(1)
    st = {"fill": {**{c: p.impute["values"][c] for c in NUM}, **modes}, "cats": cats,
          "clip": {c: (mu[c] - K * sd[c], mu[c] + K * sd[c]) for c in NUM}}
    enc, out = encoded_pass(folder, rule, st, p.scale)
    center, width = enc.means(), enc.sds(0)
    theirs = parquet_moments(prep_dir / "train")
    groups = {
        "clip bounds (mean +- k sd, ddof 1)": [(c, a, b, abs(a)) for c in NUM
                                               for a, b in zip(st["clip"][c], p.clip[c], strict=True)],
        "scaler sd (ddof 0)": [(c, width[c], p.scale["scale"][c], width[c]) for c in p.columns],
        "scaler mean": [(c, center[c], p.scale["center"][c], width[c]) for c in p.columns],
        "output train feature mean": [(c, out.means()[c], theirs.means()[c], 1.0) for c in out.columns],
        "output train feature sd": [(c, out.sds(1)[c], theirs.sds(1)[c], 1.0) for c in out.columns]}
    table, off = compare(groups)
    lines = [f"  rows per split: conductor {p.counts}, pandas {counts} (the same rows: {not bad})",
             f"  categories, modes, class counts: {'equal' if not bad else 'see below'}; medians: Dask's off the "
             f"exact rank 0.5 by at most {abs(raw['rank'][worst]):.4f} ({worst}; bound {BOUND})",
             "  pandas (chunked, whole data set) against conductor; difference relative to max(|a|, |b|, size):",
             *tol_table(table)]
    return lines, bad + off, raw["size"]


def run_cli(args: list[str], env: dict) -> tuple[dict | None, float, object, str]:
    """`python -m flows ARGS --json` with its process tree's RSS sampled; (summary, wall, TreeRSS, stderr tail)."""
    import subprocess

    from rss_tree import TreeRSS

    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "flows", *args, "--json"], stdout=out, stderr=err,
                                env=env, cwd=ROOT)
        with TreeRSS(proc.pid, every=0.5, pss=True) as rss:
            proc.wait()
        out.seek(0)
        err.seek(0)
        last = (out.read().strip().splitlines() or [""])[-1]
        tail = "\n".join(err.read().strip().splitlines()[-5:])
    wall = time.perf_counter() - t0
    summary = json.loads(last) if proc.returncode == 0 and last.startswith("{") else None
    if summary is None:
        tail = f"exit {proc.returncode}, last stdout line {last[:200]!r}\n{tail}"
    return summary, wall, rss, tail


def ooc_train_predict(args, tmp: Path, source: str, rows: int, in_memory_bytes: int) -> tuple[list[str], list[str]]:
    """`conductor run` (1 epoch, 1 worker) on the prepared data set (the cache preprocess left: no Dask work),
    Ray's object store capped; then `conductor predict` of that run on the whole data set to a Parquet file."""
    import yaml

    spec = tmp / "ooc.yaml"
    spec.write_text(yaml.safe_dump(ooc_spec(source), sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "CONDUCTOR_DASK_ADDRESS"}
    env |= {"CONDUCTOR_HOME": str(tmp / "home"), "CONDUCTOR_OBJECT_STORE_MB": str(args.object_store)}
    lines, bad = [], []
    run, wall, rss, tail = run_cli(["run", str(spec)], env)
    if run is None:
        return [f"  conductor run: FAILED after {wall:.0f} s\n{tree_line(rss)}\n{tail}"], ["conductor run failed"]
    m = run.get("metrics", {})
    timed = ", ".join(f"{k} {v:.0f} s" for k, v in run.get("timings", {}).items() if isinstance(v, int | float))
    lines.append(f"  conductor run, 1 epoch on 1 Ray Train worker, object store capped at {args.object_store} MiB: "
                 f"{wall:.0f} s, epochs {m.get('epochs')}, test accuracy {m.get('test/accuracy', float('nan')):.4f}; "
                 f"preprocessing cached: {run.get('preprocess', {}).get('cached')}, {run.get('samples_per_s', 0):,.0f} "
                 f"samples/s ({timed})")
    lines.append(tree_line(rss))
    if m.get("epochs") != 1:
        bad.append(f"conductor run: epochs {m.get('epochs')}, not 1")
    out = tmp / "predictions.parquet"
    pred, wall, rss, tail = run_cli(["predict", run["run_dir"], source, "--out", str(out)], env)
    if pred is None:
        return lines + [f"  conductor predict: FAILED after {wall:.0f} s\n{tree_line(rss)}\n{tail}"], \
            bad + ["conductor predict failed"]
    groups = pq.ParquetFile(out).num_row_groups
    lines.append(f"  conductor predict of the whole data set ({in_memory_bytes / 2**30:.2f} GiB as pandas frames): "
                 f"{pred['rows']:,} rows in {wall:.0f} s, {groups} Parquet row groups written one by one")
    lines.append(tree_line(rss))
    if pred["rows"] != rows:
        bad.append(f"conductor predict: {pred['rows']} rows of {rows}")
    return lines, bad


def tree_line(rss) -> str:
    top = "; ".join(f"{name} {peak / 2**20:.0f}" for name, peak in rss.top(3))
    return (f"    peak of its process tree: RSS summed {rss.peak / 2**20:.0f} MiB at {rss.peak_at:.0f} s, PSS summed "
            f"{rss.peak_pss / 2**20:.0f} MiB (shared pages counted once); highest processes (MiB): {top}")


def out_of_core(args) -> tuple[list[str], list[str]]:
    """The data set written in files beforehand, over --factor x the Dask workers' memory limits together;
    preprocess() on worker processes, its process tree's RSS against 1.2 x the limits + the 1 MB baseline."""
    limit = args.workers * args.worker_memory * 2**20
    logging.getLogger("distributed").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["CONDUCTOR_HOME"] = str(tmp / "home")
        t0 = time.perf_counter()
        data = dict(zip(("rows", "size", "csv_bytes"), write_files(tmp / "data", args.factor * limit, args.file_rows),
                        strict=True))
        data |= {"gen_s": time.perf_counter() - t0, "files": len(list((tmp / "data").glob("*.csv")))}
        base = dict(zip(("rows", "size", "csv_bytes"), write_files(tmp / "base", 0, BASE_ROWS), strict=True))
        source = str(tmp / "data" / ("*.csv" if args.file_rows else "table.csv"))
        got = ooc_preprocess(args, tmp, source, str(tmp / "base" / "*.csv"))
        lines = ooc_lines(args, limit, data, base, got)
        bad = [f"the nanny restarted {got['restarted']}: {got['nanny'][:3]}"] if got["restarted"] or got["nanny"] else []
        if "error" in got:
            return lines + [f"  preprocess() FAILED: {got['error']}"], bad + ["preprocess() failed"]
        prepared = got["prepared"]
        t0 = time.perf_counter()
        checks, off, read_size = ooc_verify(tmp / "data", prepared.dir, prepared.preprocessor, data["rows"])
        lines += [f"  as pandas reads it back: {read_size / 2**30:.2f} GiB ({read_size / limit:.2f}x the limit)",
                  *checks, f"  pandas' chunked passes: {time.perf_counter() - t0:.0f} s (apart)"]
        bad += off
        if not args.no_train:
            more, worse = ooc_train_predict(args, tmp, source, data["rows"], data["size"])
            lines, bad = lines + more, bad + worse
    lines.append("  results: " + ("equal within the tolerances" if not bad else "DIFFER:\n    " + "\n    ".join(bad)))
    return lines, bad


def ooc_lines(args, limit: int, data: dict, base: dict, got: dict) -> list[str]:
    """What the preprocess() run measured: sizes, s per GB, the process tree's peak RSS against its bound,
    the workers' peaks, pauses, spilling and restarts."""
    rss, base_rss, wall = got["rss"], got["base"], got["wall"]
    bound = 1.2 * limit + base_rss.peak
    workers = ", ".join(f"{v / 2**20:.0f}" for k, v in rss.peak_of.items() if k != os.getpid())
    return [
        f"out of core: {args.workers} Dask worker process(es) x {args.threads} thread(s), memory limit "
        f"{args.worker_memory} MiB each ({limit / 2**20:.0f} MiB together; the nanny's default thresholds)",
        f"  data set: {data['rows']:,} rows in {data['files']} CSV file(s) of {args.file_rows or data['rows']:,} "
        f"rows, {data['csv_bytes'] / 1e9:.2f} GB of CSV; as pandas frames {data['size'] / 2**30:.2f} GiB as "
        f"written ({data['size'] / limit:.2f}x the limit); written in {data['gen_s']:.0f} s (apart)",
        f"  preprocess(): {wall:.1f} s = {wall / (data['csv_bytes'] / 1e9):.1f} s per GB of CSV, "
        f"{wall / (data['size'] / 1e9):.1f} s per GB as pandas frames",
        f"  peak RSS of this process and every descendant: {rss.peak / 2**20:.0f} MiB ({rss.samples} samples, "
        f"every 0.2 s, longest gap {rss.gap:.1f} s); the same tree on the 1 MB file ({base['rows']:,} rows, "
        f"{base['csv_bytes'] / 1e6:.1f} MB): {base_rss.peak / 2**20:.0f} MiB",
        f"  RSS bound 1.2 x {limit / 2**20:.0f} + {base_rss.peak / 2**20:.0f} = {bound / 2**20:.0f} MiB: "
        f"{'met' if rss.peak <= bound else 'NOT MET'} (reported, not an exit status)",
        f"  descendants' peak RSS: {workers} MiB; workers paused {got['paused']}x (80% of the limit), spilled "
        f"{sum(w['spilled'] for w in got['after'].values()) / 2**20:.0f} MiB; killed over 95% of the limit: "
        f"{sum('exceeded' in m for m in got['nanny'])}x, workers whose pid changed: {len(got['restarted'])} "
        f"({'; '.join(got['nanny'][:2]) or 'the nanny said nothing'})"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000, help="in memory: rows of the CSV")
    ap.add_argument("--out-of-core", action="store_true", help="the out-of-core part only (~25 min)")
    ap.add_argument("--all", action="store_true", help="the in-memory part, then the out-of-core part")
    ooc_args(ap)
    args = ap.parse_args()
    lines, bad = [], []
    if args.all or not args.out_of_core:
        got = in_memory(args)
        lines, bad = lines + got[0], bad + got[1]
    if args.all or args.out_of_core:
        got = out_of_core(args)
        lines, bad = lines + [""] * bool(lines) + got[0], bad + got[1]
    print("\npreprocess_scale:\n" + "\n".join(lines))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
