"""Sample keys, read one part at a time: a run never holds a list of every key.

A ``deepcore-prune`` run identifies a sample by its global row (input order); the
keys are only needed to write the outputs. A :class:`KeySource` knows which rows each
of its parts covers (``offsets``) and reads one part's keys on demand, so the outputs
are written part by part (:func:`deep_core.corpus.outputs.write_key_outputs`) and the
memory in use is one part's keys, whatever the corpus size:

- :class:`KeyList`: keys already in memory (an image folder), one part;
- :class:`RowNumbers`: ``"0" .. "N-1"`` when no keys are given, parts of
  ``PART_ROWS`` rows;
- :class:`KeyFile`: a ``--keys`` text file, parts of ``PART_ROWS`` lines read from
  their byte offsets (found, with the checks, in one streaming pass: :func:`scan_key_file`);
- :class:`TableKeys` (:mod:`.shards`): the key column of each Parquet / Arrow file;
- :class:`~deep_core.corpus.wds.TarKeys`: the samples of each WebDataset tar shard.

Keys must be unique. :class:`UniqueKeys` checks it without a set of strings: it keeps
one 64-bit hash per row (8 bytes, sorted in place at the end) and, only when two
hashes are equal, reads the parts again to find the first key seen twice (the same key
the check over a list of every key names).
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DeepCoreError

#: rows per part of a keys file or of row-number keys
PART_ROWS = 1 << 20


class KeySource(abc.ABC):
    """The keys of rows ``offsets[p]:offsets[p + 1]``, one part ``p`` at a time.

    Attributes
    ----------
    offsets : ndarray of int64, shape (parts + 1,)
        First row of every part, then the number of rows.
    """

    offsets: np.ndarray

    @property
    def num_rows(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_parts(self) -> int:
        return len(self.offsets) - 1

    @abc.abstractmethod
    def read(self, part: int) -> list[str]:
        """The keys of part ``part``, in row order."""


def _even_offsets(n: int, rows: int) -> np.ndarray:
    return np.append(np.arange(0, n, rows, dtype=np.int64), np.int64(n))


class KeyList(KeySource):
    """Keys held in memory (small inputs: an image folder), as one part."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = keys
        self.offsets = np.array([0, len(keys)], dtype=np.int64)

    def read(self, part: int) -> list[str]:
        return list(self.keys)


class RowNumbers(KeySource):
    """The row numbers as keys (``"0"`` .. ``"N-1"``), in parts of ``PART_ROWS``."""

    def __init__(self, n: int) -> None:
        self.offsets = _even_offsets(n, PART_ROWS)

    def read(self, part: int) -> list[str]:
        return [str(i) for i in range(int(self.offsets[part]), int(self.offsets[part + 1]))]


class KeyFile(KeySource):
    """Lines of a checked UTF-8 keys file (:func:`scan_key_file`), in parts of ``PART_ROWS``.

    ``starts[p]`` is the byte offset of part ``p``'s first line (then the file size).
    """

    def __init__(self, path: Path, offsets: np.ndarray, starts: np.ndarray) -> None:
        self.path = path
        self.offsets = offsets
        self.starts = starts

    def read(self, part: int) -> list[str]:
        lo, hi = int(self.starts[part]), int(self.starts[part + 1])
        try:
            with open(self.path, "rb") as f:
                f.seek(lo)
                raw = f.read(hi - lo)
        except OSError as e:
            raise DeepCoreError(f"cannot read keys file {self.path}: {e}") from None
        lines = raw.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        keys = [decode_line(b, self.path) for b in lines]
        if len(keys) != self.offsets[part + 1] - self.offsets[part]:
            raise DeepCoreError(f"keys file {self.path} changed while this run read it")
        return keys


def decode_line(raw: bytes, path: Path, *, what: str = "keys") -> str:
    """One line of a UTF-8 text file without its ``\\n`` / ``\\r\\n`` ending."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DeepCoreError(f"cannot read {what} file {path}: {e}") from None
    if text.endswith("\n"):
        text = text[:-1]
    return text.rstrip("\r")


class UniqueKeys:
    """Finds a repeated key among parts of keys, holding one int64 hash per row."""

    def __init__(self) -> None:
        self._hashes: list[np.ndarray] = []

    def add(self, keys: list[str]) -> None:
        """Record the next keys (in row order)."""
        self._hashes.append(np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys)))

    def first_repeat(self, source: KeySource) -> str | None:
        """The first key (in row order) that an earlier row already has, or None.

        ``source`` reads the same keys again; it is used only when two hashes collide.
        """
        h = np.concatenate(self._hashes) if self._hashes else np.empty(0, np.int64)
        self._hashes = []
        h.sort()
        same = h[1:] == h[:-1]
        if not same.any():
            return None
        suspects = set(h[1:][same].tolist())
        del h
        seen: set[str] = set()
        for part in range(source.num_parts):
            for key in source.read(part):
                if hash(key) in suspects:
                    if key in seen:
                        return key
                    seen.add(key)
        return None  # only hash collisions


def scan_key_file(path: str | Path, n: int) -> KeyFile:
    """Check a keys file (``n`` lines, non-empty, unique) in one streaming pass.

    Lines end with ``\\n`` or ``\\r\\n``; a final line without an ending counts. Raises
    :class:`~deep_core.errors.DeepCoreError` naming the first problem, in this order:
    a line count that is not ``n``, an empty line, a carriage return inside a line, a
    repeated key.
    """
    path = Path(path)
    if not path.is_file():
        raise DeepCoreError(f"keys file not found: {path}")
    lines = 0
    pos = 0
    starts = [0]
    empty = inner_cr = None
    unique = UniqueKeys()
    try:
        with open(path, "rb") as f:
            while True:
                raw = list(itertools.islice(f, PART_ROWS))
                if not raw:
                    break
                keys = [decode_line(b, path) for b in raw]
                if empty is None and "" in keys:
                    empty = lines + keys.index("") + 1
                if inner_cr is None:
                    bad = next((i for i, k in enumerate(keys) if "\r" in k), None)
                    if bad is not None:
                        inner_cr = lines + bad + 1
                unique.add(keys)
                lines += len(keys)
                pos += sum(map(len, raw))
                starts.append(pos)
    except OSError as e:
        raise DeepCoreError(f"cannot read keys file {path}: {e}") from None
    if lines != n:
        raise DeepCoreError(f"keys file {path} has {lines:,} lines but features has {n:,} rows")
    if empty is not None:
        raise DeepCoreError(f"keys file {path} has an empty line (line {empty})")
    if inner_cr is not None:
        raise DeepCoreError(f"keys file {path} has a carriage return inside line {inner_cr}")
    source = KeyFile(path, _even_offsets(n, PART_ROWS), np.array(starts, dtype=np.int64))
    dup = unique.first_repeat(source)
    if dup is not None:
        raise DeepCoreError(f"keys file {path} repeats the key {dup!r}")
    return source
