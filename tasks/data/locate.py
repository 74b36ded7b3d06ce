"""After a CSV fails to parse on Dask: find the file, line and value by reading it once more, in order.

dask's read_csv infers dtypes from the first block, so a text value in a numeric column, a row with
too many fields or a byte that is not UTF-8 further down fails mid-computation, far from the line.
Nothing here runs on a normal run: only after such a failure, or to name the line of a bad value
(sources.read_errors and sources.value_line resolve the files and call in).
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from contextlib import closing

from ..errors import UserError
from ..lazy import LazyModule

pd = LazyModule("pandas")  # loaded on first use: drivers import this module for checks that never need it

NA_TEXT = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
           "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}  # pandas' default missing values
BOOL_TEXT = {"True", "TRUE", "true", "False", "FALSE", "false"}


def is_parse_error(e: BaseException) -> bool:
    """A parser's complaint about the user's file, as pandas raises it inside a dask task."""
    if isinstance(e, UserError):
        return False
    if isinstance(e, pd.errors.ParserError | UnicodeDecodeError):
        return True
    return isinstance(e, ValueError) and "Mismatched dtypes found" in str(e)


class QuietParseFailures:
    """A logging filter for `distributed.worker`: its multi-line 'Compute Failed' record of a CSV parse
    error goes, since read_errors says the same in one line; every other record passes."""

    MARKS = ("Mismatched dtypes found", "ParserError(", "UnicodeDecodeError(")

    def filter(self, record) -> bool:
        text = record.getMessage()
        return not (text.startswith("Compute Failed") and any(m in text for m in self.MARKS))


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def _kinds(dtypes: dict, e: BaseException) -> dict[str, str]:
    """Columns whose values must parse, and as what: the numeric and boolean ones of the dask metadata
    (only those the error names, where it names any)."""
    kinds = {}
    for c, dt in dtypes.items():
        if pd.api.types.is_bool_dtype(dt):
            kinds[c] = "true/false"
        elif pd.api.types.is_numeric_dtype(dt):
            kinds[c] = "a number"
    named = set(re.findall(r"^\|\s*(.+?)\s*\|", str(e), re.M)) & set(kinds)
    return {c: k for c, k in kinds.items() if c in named} if named else kinds


def locate_error(kind: str, files: list[str], fs, source: str, dtypes: dict, e: BaseException,
                 where: str = "data.source") -> UserError:
    """Read each file of a CSV source in order; the first bad byte, ragged row or bad value wins."""
    if kind == "csv":
        kinds = _kinds(dtypes, e)
        for path in files:
            found = scan_csv(fs, path, kinds, where)
            if found:
                return UserError(found)
    return UserError(f"{where}: cannot read {source!r} as {kind} ({_first_line(e)}); fix the file")


def _lines(raw, path: str, where: str) -> Iterator[str]:
    """Decoded lines of a binary stream; a byte that is not UTF-8 stops with its line and offset."""
    offset = 0
    for lineno, chunk in enumerate(raw, 1):
        try:
            yield chunk.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as err:
            bad = chunk[err.start:err.end]
            raise UserError(f"{where}: {path} line {lineno}, byte {err.start + 1} of the line (offset {offset + err.start} "
                            f"of the file): {bad!r} is not UTF-8; save the file as UTF-8 or fix that byte") from None
        offset += len(chunk)


def _open(fs, path: str):
    compression = "infer" if not path.lower().endswith((".csv", ".tsv")) else None
    return fs.open(path, "rb", compression=compression)


def _rows(fs, path: str, where: str):
    """(line number, fields) of each non-empty record after the header, and the header."""
    with _open(fs, path) as raw:
        reader = csv.reader(_lines(raw, path, where), delimiter="\t" if path.lower().endswith(".tsv") else ",")
        header = next(reader, [])
        yield 1, header
        for row in reader:
            if row:
                yield reader.line_num, row


def _bad_value(v: str, kind: str) -> bool:
    v = v.strip()
    if v in NA_TEXT:
        return False
    if kind == "true/false":
        return v not in BOOL_TEXT
    if "_" in v:  # Python's float() reads 1_000, pandas does not
        return True
    try:
        float(v)
    except ValueError:
        return True
    return False


def scan_csv(fs, path: str, kinds: dict[str, str], where: str = "data.source") -> str | None:
    """The first problem of one CSV file as an error message, or None when every line reads."""
    with closing(_rows(fs, path, where)) as rows:
        _, header = next(rows)
        index = [(i, c, kinds[c]) for i, c in enumerate(header) if c in kinds]
        for lineno, row in rows:
            if len(row) > len(header):
                return (f"{where}: {path} line {lineno}: {len(row)} fields, but the header (line 1) has "
                        f"{len(header)}; quote values that hold the separator, or fix the line")
            for i, c, kind in index:
                if i < len(row) and _bad_value(row[i], kind):
                    return (f"{where}: {path} line {lineno}, column {c!r}: {row[i]!r} is not {kind}; "
                            "fix the file or list the column in data.drop")
    return None


def check_header(fs, path: str, where: str = "data.source") -> None:
    """A CSV header that names a column twice (pandas would quietly rename the second one 'x.1')."""
    with closing(_rows(fs, path, where)) as rows:
        _, header = next(rows)
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise UserError(f"{where}: {path} line 1 names column(s) {twice} more than once; give each column "
                        "a unique name")


def find_value(fs, files: list[str], column: str, value: str) -> str | None:
    """'FILE line N' of the first CSV record whose `column` holds `value` (as text)."""
    for path in files:
        with closing(_rows(fs, path, "data.source")) as rows:
            _, header = next(rows)
            if column not in header:
                continue
            i = header.index(column)
            for lineno, row in rows:
                if i < len(row) and row[i].strip() == value.strip():
                    return f"{path} line {lineno}"
    return None
