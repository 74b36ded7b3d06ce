"""Where rows come from: builtin data sets that installed packages ship, or the user's files, as dask."""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import unquote

from cluster.settings import redact_url

from ..errors import UserError
from ..spec import Data, Spec
from .builtin import builtin_frame
from .locate import check_header, find_value, is_parse_error, locate_error

if TYPE_CHECKING:  # dask.dataframe loads when rows are read: a command whose data is cached never needs it
    import dask.dataframe as dd

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
# A CSV partition peaks at ~11x its size in a Dask worker (64 MB: 695 MiB, and a 768 MiB worker was killed again
# and again). Not derived from the workers' memory: the split is drawn per partition, alike on every cluster.
CSV_BLOCK = "16MB"
# pandas' "Columns (0: a) have mixed types" is printed from a reader deep inside dask, before conductor's own
# line that names the file, line, column and value (tasks/data/locate.py): it adds nothing but noise. By its text,
# not its class (pandas.errors.DtypeWarning): this module is imported by drivers that never load pandas
warnings.filterwarnings("ignore", message=r"Columns \(.*\) have mixed types")
SOURCE_ENV = "CONDUCTOR_SOURCE_"  # + hash of the masked URL: the real one, in this process's environment only


def source_env_var(masked: str) -> str:
    return SOURCE_ENV + hashlib.sha256(masked.encode()).hexdigest()[:16].upper()


def hide_source(spec: Spec) -> Spec:
    """The spec with data.source's credential masked (user:***@, token=***); the real URL is put in this
    process's environment, where every reader below finds it again. So a spec that is written, logged,
    tracked or passed to Prefect as a parameter never holds a credential."""
    real = spec.data.source
    masked = redact_url(real)
    if masked == real:
        return spec
    os.environ[source_env_var(masked)] = real
    return spec.model_copy(update={"data": spec.data.model_copy(update={"source": masked})})


def is_masked(source: str) -> bool:
    return ":***@" in source or "=***" in source


def real_source(source: str, where: str = "data.source") -> str:
    """The URL to read: the one hide_source put aside for a masked `source`, else `source` itself."""
    real = os.environ.get(source_env_var(source))
    if real and redact_url(real) == source:
        return real
    if is_masked(source) and redact_url(source) == source:
        raise UserError(f"{where}: {source!r} hides a credential this process was not given; a flow run by a "
                        "cluster's worker reads with the credentials of its environment (AWS_* variables, ~/.aws, "
                        "...), so put the credential there and name the source without it")
    return source


def scrub(text: str, source: str) -> str:
    """`text` (an error message) with every credential of `source`, masked or real, masked."""
    real = os.environ.get(source_env_var(source), source)
    parts = redact_url(real).split("***")
    hidden = re.fullmatch("(.+?)".join(map(re.escape, parts)), real, re.S) if len(parts) > 1 else None
    secrets = {v for s in (hidden.groups() if hidden else ()) for v in (s, unquote(s)) if len(v) >= 4}
    for secret in sorted(secrets, key=len, reverse=True):  # also where a message shows it without its URL
        text = text.replace(secret, "***")
    return redact_url(text)


@contextmanager
def masked_errors(source: str):
    """A UserError naming the files of a credentialed source says them masked."""
    try:
        yield
    except UserError as e:
        if (clean := scrub(str(e), source)) != str(e):
            raise UserError(clean) from None
        raise


def source_kind(path: str, where: str = "data.source") -> str:
    lower = path.lower().split("?", 1)[0] if "://" in path else path.lower()
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise UserError(f"{where}: {redact_url(path)!r} is neither CSV ({', '.join(CSV_SUFFIXES)}) nor Parquet "
                    f"({', '.join(PARQUET_SUFFIXES)}), nor a directory of Parquet files")


def expand_source(source: str, where: str = "data.source") -> tuple[str, list[str], object]:
    """Resolve a path, glob or fsspec URL to (kind, files, filesystem); UserError when nothing is there.
    A masked source is read from its real URL (hide_source); every error names it masked."""
    with masked_errors(source):
        return _expand(real_source(source, where), redact_url(source), where)


def _expand(source: str, shown: str, where: str) -> tuple[str, list[str], object]:
    import fsspec

    try:
        fs, _, paths = fsspec.core.get_fs_token_paths(source)
    except (ValueError, ImportError) as e:
        raise UserError(f"{where}: cannot open {shown!r} ({e})") from None
    if len(paths) == 1 and fs.isdir(paths[0]):
        files = sorted(p for p in fs.find(paths[0]) if p.lower().endswith(PARQUET_SUFFIXES))
        if not files:
            raise UserError(f"{where}: directory {shown!r} holds no Parquet files")
        return "parquet", files, fs
    paths = [p for p in paths if fs.exists(p)]
    if not paths:
        raise UserError(f"{where}: no file matches {shown!r}")
    kinds = {source_kind(p, where) for p in paths}
    if len(kinds) > 1:
        raise UserError(f"{where}: {shown!r} mixes CSV and Parquet files; point it at one kind")
    return kinds.pop(), sorted(paths), fs


def read_table(source: str, where: str = "data.source") -> dd.DataFrame:
    """A CSV/Parquet path, glob or fsspec URL as a lazy dask dataframe; `where` names it in errors."""
    kind, files, fs = expand_source(source, where)
    with masked_errors(source):
        return _read(source, kind, files, fs, where)


def _read(source: str, kind: str, files: list[str], fs, where: str) -> dd.DataFrame:
    import dask.dataframe as dd

    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    urls = files if protocol in ("file", "local") else [f if "://" in f else f"{protocol}://{f}" for f in files]
    if kind == "csv":
        check_header(fs, files[0], where)  # dask reads every file with the first one's columns
    try:
        if kind == "csv":
            sep = "\t" if files[0].lower().endswith(".tsv") else ","
            return dd.read_csv(urls, sep=sep, blocksize=CSV_BLOCK, assume_missing=True)
        return dd.read_parquet(urls)
    except Exception as e:  # noqa: BLE001 - a parser error is the user's file, not our bug
        if is_parse_error(e):  # in the sample dask reads for its metadata: find the line
            raise locate_error(kind, files, fs, source, {}, e, where) from None
        raise UserError(f"{where}: cannot read {redact_url(source)!r} as {kind} "
                        f"({type(e).__name__}: {(str(e).splitlines() or [''])[0]})") from None


@contextmanager
def read_errors(source: str, dtypes: dict, where: str = "data.source"):
    """A parse error raised while Dask reads `source` (past the sample its dtypes come from) becomes a
    UserError naming file, line, column and value, found by reading the files once more."""
    try:
        yield
    except Exception as e:
        if not is_parse_error(e):
            if source.startswith("builtin:") or (clean := scrub(str(e), source)) == str(e):
                raise
            raise OSError(f"{where}: reading {redact_url(source)!r} failed ({type(e).__name__}: {clean})") from None
        if source.startswith("builtin:"):
            raise UserError(f"{where}: cannot read {source!r} ({type(e).__name__}: {str(e).splitlines()[0]})") from None
        kind, files, fs = expand_source(source, where)
        with masked_errors(source):
            raise locate_error(kind, files, fs, source, dtypes, e, where) from None


def value_line(source: str, column: str, value: str) -> str | None:
    """'FILE line N' where `column` first holds `value`, for a CSV source; else None."""
    if source.startswith("builtin:"):
        return None
    kind, files, fs = expand_source(source)
    where = find_value(fs, files, column, value) if kind == "csv" else None
    return scrub(where, source) if where else None


def load_source(data: Data) -> dd.DataFrame:
    """Read lazily: nothing but metadata is touched until a computation asks for rows."""
    import dask.dataframe as dd

    if data.source.startswith("builtin:"):
        frame = builtin_frame(data.source.split(":", 1)[1], data.task, data.synthetic)
        parts = int((data.synthetic or {}).get("partitions", 0)) or max(1, min(8, len(frame) // 50_000 + 1))
        return dd.from_pandas(frame, npartitions=parts, sort=False)
    return read_table(data.source)


CHUNK = 8 * 2**20
# what object stores and HTTP servers report as a hash of a file's bytes (S3/GCS/Azure/HTTP, via fsspec)
REMOTE_CHECKSUMS = ("ETag", "etag", "checksum", "md5Hash", "md5", "crc32c", "content_md5")


def _byte_hasher():
    try:  # xxh3: ~25 GB/s here, against sha1's ~2 GB/s: the hash stays far under 10% of preprocessing
        import xxhash

        return xxhash.xxh3_128()
    except ImportError:
        return hashlib.sha1(usedforsecurity=False)


def content_digest(fs, path: str, info: dict) -> str:
    """What a file holds: a hash of its bytes for a local file (read in 8 MB chunks, never whole), else the
    checksum or ETag its filesystem reports, else (none reported) its size and modification time."""
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        h = _byte_hasher()
        with fs.open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return f"bytes:{h.hexdigest()}"
    for key in REMOTE_CHECKSUMS:
        if info.get(key):
            return f"{key}:{info[key]}"
    return f"stat:{info.get('size')}|{info.get('mtime', info.get('LastModified', ''))}"


def source_fingerprint(data: Data) -> str:
    """Hash of what the data is: the data spec plus each file's path and content (content_digest) — the same
    size and modification time with other bytes is other data."""
    # data.season only picks a baseline's period: preprocessing, and so the cache, does not depend on it
    h = hashlib.sha256(json.dumps(data.model_dump(exclude={"season"}), sort_keys=True, default=str).encode())
    if not data.source.startswith("builtin:"):
        _, files, fs = expand_source(data.source)
        for f in files:
            h.update(f"{f}|{content_digest(fs, f, fs.info(f))}".encode())
    return h.hexdigest()[:16]


def refuse_credentials(source: str) -> None:
    """A flow run's parameters are stored by the Prefect server and shown in its UI: no credential goes there."""
    from cluster.settings import redact_url

    if (shown := redact_url(source)) != source or is_masked(source):
        raise UserError(f"data.source: {shown!r} carries a credential, which `submit` does not hand to the cluster "
                        "(it would be a Prefect parameter); put it in the environment of the cluster's worker "
                        "instead (fsspec reads AWS_* variables, ~/.aws, GOOGLE_APPLICATION_CREDENTIALS, ...) and "
                        "name the source without it")
