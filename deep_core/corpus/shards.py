"""Sharded embedding inputs: many ``.npy`` files, or Parquet / Arrow tables.

``--features`` names one ``.npy`` (memory-mapped as is), a folder, or a glob pattern.
A folder or pattern resolves to its ``.npy`` shards, or to its Parquet (``.parquet``)
or Arrow IPC (``.arrow``, ``.feather``) files, one kind only, in natural name order
(``part-2`` before ``part-10``). Shards are read one at a time, Parquet and Arrow
files in record batches, and their rows are written into one float32 ``.npy`` in the
run's cache, memory-mapped afterwards like a single input file: the memory in use is
one batch, whatever the corpus size. The copy is keyed by the shards' paths, sizes and
modification times (and the columns read), so re-runs reuse it.

Parquet and Arrow tables carry an embedding column (a list or fixed-size list of
floats, the same length in every row) and a key column (strings or integers, unique);
the keys replace ``--keys``. The keys are checked while the embeddings are copied
(one hash per row, :class:`~deep_core.corpus.keys.UniqueKeys`) and are never held
together: :class:`TableKeys` reads one file's key column when the outputs are written.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DeepCoreError
from .keys import KeySource, UniqueKeys

NPY = (".npy",)
TABLES = (".parquet", ".arrow", ".feather")
#: rows per record batch read from a table
BATCH_ROWS = 1 << 16


@dataclass(frozen=True)
class ShardSet:
    """The resolved shard files of one ``--features`` argument.

    Attributes
    ----------
    paths : tuple of Path
        Shard files in reading order.
    kind : {"npy", "table"}
        ``.npy`` arrays or Parquet / Arrow tables.
    """

    paths: tuple[Path, ...]
    kind: str

    def fingerprint(self, *columns: str) -> str:
        """Hash of the shards' paths, sizes, modification times and the columns read."""
        h = hashlib.sha1()
        for p in self.paths:
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        h.update("|".join(columns).encode())
        return h.hexdigest()[:20]


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def resolve_shards(spec: str | Path) -> ShardSet | None:
    """The shards behind ``spec``; None when it is a single ``.npy`` file (read as is)."""
    text = str(spec)
    path = Path(text)
    if path.is_file():
        if path.suffix in NPY:
            return None
        if path.suffix in TABLES:
            return ShardSet((path,), "table")
        raise DeepCoreError(
            f"features file {path} is not .npy, .parquet, .arrow or .feather"
        )
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file()]
        where = f"folder {path}"
    elif any(c in text for c in "*?["):
        found = [Path(p) for p in glob.glob(text) if os.path.isfile(p)]
        where = f"pattern {text!r}"
    else:
        raise DeepCoreError(f"features not found: {path}")
    npy = sorted((p for p in found if p.suffix in NPY), key=_natural_key)
    tables = sorted((p for p in found if p.suffix in TABLES), key=_natural_key)
    if npy and tables:
        raise DeepCoreError(f"{where} mixes .npy shards and tables; give one kind")
    if not npy and not tables:
        raise DeepCoreError(f"{where} has no .npy, .parquet, .arrow or .feather files")
    return ShardSet(tuple(npy), "npy") if npy else ShardSet(tuple(tables), "table")


# -- tables ---------------------------------------------------------------------------
def _check_columns(path: Path, columns: list[str], names: list[str]) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise DeepCoreError(f"{path} has no column {missing[0]!r} (columns: {', '.join(names)})")


def _table_batches(path: Path, columns: list[str]):
    """Record batches of ``columns`` from a Parquet or Arrow IPC file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            f = pq.ParquetFile(path)
            _check_columns(path, columns, f.schema_arrow.names)
            yield from f.iter_batches(batch_size=BATCH_ROWS, columns=columns)
            return
        source = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            schema = reader.schema
        except pa.ArrowInvalid:
            source = pa.memory_map(str(path))
            reader = pa.ipc.open_stream(source)
            batches, schema = iter(reader), reader.schema
        _check_columns(path, columns, schema.names)
        for batch in batches:
            yield batch.select(columns)
    except (OSError, pa.ArrowException) as e:
        raise DeepCoreError(f"cannot read {path}: {str(e).splitlines()[0]}") from None


def _table_rows(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            return int(pq.ParquetFile(path).metadata.num_rows)
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(path)))
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            return sum(b.num_rows for b in pa.ipc.open_stream(pa.memory_map(str(path))))
    except (OSError, pa.ArrowException) as e:
        raise DeepCoreError(f"cannot read {path}: {str(e).splitlines()[0]}") from None


def _embedding_block(column, path: Path, name: str) -> np.ndarray:
    """A list column of equal-length float lists as an (n, d) float32 array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if pa.types.is_fixed_size_list(t):
        d = t.list_size
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if lengths.size and (lengths != lengths[0]).any():
            raise DeepCoreError(f"{path}: column {name!r} has lists of different lengths")
        d = int(lengths[0]) if lengths.size else 0
    else:
        raise DeepCoreError(f"{path}: column {name!r} must be a list of floats, got {t}")
    if column.null_count:
        raise DeepCoreError(f"{path}: column {name!r} has missing rows")
    values = pc.list_flatten(column)
    if not pa.types.is_floating(values.type):
        raise DeepCoreError(f"{path}: column {name!r} must hold floats, got {values.type}")
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, d)


def _first_dims(shards: ShardSet, embedding_column: str) -> int:
    for path in shards.paths:
        for batch in _table_batches(path, [embedding_column]):
            if batch.num_rows:
                return _embedding_block(batch.column(0), path, embedding_column).shape[1]
    raise DeepCoreError("the feature tables have no rows")


# -- gathering ------------------------------------------------------------------------
def gather(
    shards: ShardSet,
    cache: Path,
    *,
    embedding_column: str = "embedding",
    key_column: str = "key",
) -> tuple[np.ndarray, TableKeys | None]:
    """All shard rows in one memory-mapped float32 ``.npy`` under ``cache``.

    Returns the rows and, for tables, their keys' source (None for ``.npy`` shards).
    Reuses an earlier copy of the same shards (whose keys were checked when it was made).
    """
    columns = (embedding_column, key_column) if shards.kind == "table" else ()
    tag = shards.fingerprint(*columns)
    dest = cache / f"features-{tag}.npy"
    keys = TableKeys(shards.paths, key_column) if shards.kind == "table" else None
    if dest.is_file():
        return np.load(dest, mmap_mode="r"), keys
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".features-{tag}.{os.getpid()}.npy"
    try:
        if keys is None:
            _gather_npy(shards, tmp)
        else:
            _gather_tables(shards, tmp, embedding_column, keys)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return np.load(dest, mmap_mode="r"), keys


class TableKeys(KeySource):
    """The key column of each Parquet / Arrow file (one part per file), as strings."""

    def __init__(self, paths: tuple[Path, ...], column: str) -> None:
        self.paths = paths
        self.column = column
        rows = [_table_rows(p) for p in paths]
        self.offsets = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)]).astype(np.int64)

    def batches(self, part: int, columns: list[str]):
        """Record batches of ``columns`` of part ``part``'s file."""
        return _table_batches(self.paths[part], columns)

    def read(self, part: int) -> list[str]:
        import pyarrow.compute as pc

        keys: list[str] = []
        for batch in self.batches(part, [self.column]):
            keys.extend(pc.cast(batch.column(0), "string").to_pylist())
        if len(keys) != self.offsets[part + 1] - self.offsets[part]:
            raise DeepCoreError(f"{self.paths[part]} changed while this run read it")
        return keys


def _gather_npy(shards: ShardSet, dest: Path) -> None:
    arrays = []
    for p in shards.paths:
        try:
            a = np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DeepCoreError(f"cannot read shard {p}: {str(e).splitlines()[0]}") from None
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.floating):
            raise DeepCoreError(f"shard {p} must be an N x d float array, got {a.dtype} {a.shape}")
        if arrays and a.shape[1] != arrays[0].shape[1]:
            raise DeepCoreError(
                f"shard {p} has {a.shape[1]} dims but {shards.paths[0]} has {arrays[0].shape[1]}"
            )
        arrays.append(a)
    n = sum(a.shape[0] for a in arrays)
    d = arrays[0].shape[1]
    out = np.lib.format.open_memmap(dest, mode="w+", dtype=np.float32, shape=(n, d))
    row = 0
    for a in arrays:
        for lo in range(0, a.shape[0], BATCH_ROWS):
            block = a[lo : lo + BATCH_ROWS]
            out[row : row + block.shape[0]] = block
            row += block.shape[0]
    out.flush()
    del out


def _gather_tables(
    shards: ShardSet, dest: Path, embedding_column: str, keys: TableKeys
) -> None:
    import pyarrow.compute as pc

    key_column = keys.column
    n = keys.num_rows
    d = _first_dims(shards, embedding_column)
    out = np.lib.format.open_memmap(dest, mode="w+", dtype=np.float32, shape=(n, d))
    unique = UniqueKeys()
    bad_key = False
    row = 0
    for part, path in enumerate(shards.paths):
        for batch in keys.batches(part, [embedding_column, key_column]):
            block = _embedding_block(batch.column(0), path, embedding_column)
            if block.shape[1] != d:
                raise DeepCoreError(
                    f"{path}: embeddings have {block.shape[1]} dims, earlier rows have {d}"
                )
            key = batch.column(1)
            if key.null_count:
                raise DeepCoreError(f"{path}: key column {key_column!r} has missing keys")
            text = pc.cast(key, "string")
            if not bad_key and len(text):
                empty = pc.equal(pc.binary_length(text), 0)
                bad_key = bool(pc.any(pc.or_(empty, pc.match_substring(text, "\n"))).as_py())
            unique.add(text.to_pylist())
            out[row : row + block.shape[0]] = block
            row += block.shape[0]
    out.flush()
    del out
    dup = unique.first_repeat(keys)
    if dup is not None:
        raise DeepCoreError(f"key column {key_column!r} repeats the key {dup!r}")
    if bad_key:
        raise DeepCoreError(f"key column {key_column!r} has an empty key or a line break")
