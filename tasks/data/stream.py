"""A prepared split read back in bounded memory: Arrow record batches, one Parquet fragment at a time."""
from __future__ import annotations

BATCH_ROWS = 65_536


def parquet_batches(path: str, columns: list[str] | None = None, batch_size: int = BATCH_ROWS):
    """The split's rows as pyarrow RecordBatches of at most `batch_size` rows, in file order, none empty.

    One fragment and one batch read ahead: Arrow's defaults (4 fragments, 16 batches) peaked ~160 MiB higher
    than this on a 10 M-row split, and read no faster from local disk."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet")
    for batch in dataset.to_batches(columns=columns, batch_size=batch_size, batch_readahead=1, fragment_readahead=1):
        if batch.num_rows:
            yield batch
