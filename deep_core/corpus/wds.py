"""WebDataset tar shards as an image corpus, read by streaming (nothing is extracted).

A shard is a ``.tar`` whose members are grouped into samples by key, as WebDataset
does: a member ``dir/abc.x.png`` belongs to the sample ``dir/abc`` (the path up to the
first dot of the file name) and a sample's members are consecutive. A sample's image is
its first member with a ``jpg``, ``jpeg``, ``png`` or ``webp`` extension (any case); an
optional ``cls`` member holds its integer label as text. A sample's corpus key is
``<shard name>/<key>`` (the shard's file name without ``.tar``); samples are in shard
order (shards sorted by path), then in tar order. The keys are not kept: a scan counts
each shard's samples, and :class:`TarKeys` reads one shard's keys again (headers only)
when the outputs are written. Keys are unique when the shard names are (a shard's
members of one sample must be together, so a shard cannot repeat a key).
"""

from __future__ import annotations

import glob
import io
import tarfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DeepCoreError
from .keys import KeySource

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class TarShards:
    """The samples of WebDataset tar shards.

    Attributes
    ----------
    root : str
        The ``--corpus-path`` as given (for messages).
    shards : tuple of Path
        Sorted shard files.
    offsets : ndarray of int64, shape (shards + 1,)
        First sample of every shard, then the number of samples.
    classes : tuple of str
        Sorted ``cls`` values (``("",)`` when the shards have none).
    labels : ndarray of int64, shape (N,)
        Index of each sample's class in ``classes``.
    """

    root: str
    shards: tuple[Path, ...]
    offsets: np.ndarray
    classes: tuple[str, ...]
    labels: np.ndarray

    def key_source(self) -> TarKeys:
        """The samples' keys, ``<shard name>/<key>``, read one shard at a time."""
        return TarKeys(self.shards, self.offsets)

    def fingerprint(self) -> Iterator[str]:
        """Every shard's path, size and modification time (the embedding cache key)."""
        for path in self.shards:
            st = path.stat()
            yield f"|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def images(self) -> Iterator[tuple[io.BytesIO, str]]:
        """Each sample's image bytes and key, in key order, one shard streamed at a time."""
        for shard in self.shards:
            for key, image, _ in _samples(shard):
                yield io.BytesIO(image), key


class TarKeys(KeySource):
    """``<shard name>/<key>`` of each shard's samples (one part per shard)."""

    def __init__(self, shards: tuple[Path, ...], offsets: np.ndarray) -> None:
        self.shards = shards
        self.offsets = offsets

    def read(self, part: int) -> list[str]:
        keys = [key for key, _, _ in _samples(self.shards[part], read_images=False)]
        if len(keys) != self.offsets[part + 1] - self.offsets[part]:
            raise DeepCoreError(f"tar shard {self.shards[part]} changed while this run read it")
        return keys


def is_tar_corpus(path: str | Path) -> bool:
    """True for a ``.tar`` file, a glob, or a folder holding ``.tar`` files at its top."""
    p = Path(path)
    if p.is_dir():
        return any(c.suffix == ".tar" and c.is_file() for c in p.iterdir())
    return p.suffix == ".tar" or glob.has_magic(str(path))


def _shard_paths(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        paths = [c for c in p.iterdir() if c.suffix == ".tar" and c.is_file()]
    elif glob.has_magic(str(path)):
        paths = [Path(m) for m in glob.glob(str(path)) if Path(m).is_file()]
        if not paths:
            raise DeepCoreError(f"--corpus-path {path} matches no files")
    elif p.is_file():
        paths = [p]
    else:
        raise DeepCoreError(f"corpus not found: {path}")
    bad = [q for q in paths if q.suffix != ".tar"]
    if bad:
        raise DeepCoreError(f"--corpus-path {path} matches a non-.tar file: {bad[0]}")
    return sorted(paths)


def _split(name: str) -> tuple[str, str]:
    """WebDataset's key and extension of a member name."""
    head, slash, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return head + slash + stem, ext if dot else ""


def _samples(shard: Path, *, read_images: bool = True) -> Iterator[tuple[str, bytes, str | None]]:
    """``(corpus key, image bytes, cls text or None)`` of every sample of one shard."""
    name = shard.name.removesuffix(".tar")
    key: str | None = None
    image: bytes | None = None
    image_seen = False
    cls: str | None = None
    seen: set[str] = set()

    def done() -> tuple[str, bytes, str | None]:
        if not image_seen:
            raise DeepCoreError(
                f"{shard}: sample {key!r} has no image member ({', '.join(IMAGE_EXTS)})"
            )
        return f"{name}/{key}", image or b"", cls

    try:
        with tarfile.open(shard, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                k, ext = _split(member.name)
                if k != key:
                    if key is not None:
                        yield done()
                    if k in seen:
                        raise DeepCoreError(
                            f"{shard}: the members of sample {k!r} are not together"
                        )
                    seen.add(k)
                    key, image, image_seen, cls = k, None, False, None
                ext = ext.lower()
                if ext in IMAGE_EXTS and not image_seen:
                    image_seen = True
                    if read_images:
                        image = tar.extractfile(member).read()  # type: ignore[union-attr]
                elif ext == "cls":
                    raw = tar.extractfile(member).read()  # type: ignore[union-attr]
                    cls = raw.decode("utf-8", errors="replace").strip()
                    if not cls.lstrip("-").isdigit():
                        raise DeepCoreError(
                            f"{shard}: {member.name} is not an integer label: {cls[:40]!r}"
                        )
                    cls = str(int(cls))
            if key is not None:
                yield done()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DeepCoreError(f"cannot read tar shard {shard}: {e}") from None


def scan_tars(path: str | Path) -> TarShards:
    """Keys and ``cls`` labels of the shards of ``path`` (one streaming pass, images skipped)."""
    shards = _shard_paths(path)
    counts: list[int] = []
    ids = array("q")  # each sample's class, numbered in order of appearance
    first_id: dict[str | None, int] = {}
    missing: str | None = None
    for shard in shards:
        count = 0
        for key, _, c in _samples(shard, read_images=False):
            if missing is None and c is None:
                missing = key
            ids.append(first_id.setdefault(c, len(first_id)))
            count += 1
        counts.append(count)
    if not ids:
        raise DeepCoreError(f"tar shards {path} hold no samples")
    _check_shard_names(path, shards)
    if missing is not None and len(first_id) > 1:
        raise DeepCoreError(f"tar shards {path}: some samples have a .cls label but {missing} not")
    names = ["" if c is None else c for c in first_id]
    classes = tuple(sorted(names, key=lambda c: int(c) if c else 0))
    remap = np.array([classes.index(c) for c in names], dtype=np.int64)
    labels = remap[np.frombuffer(ids, dtype=np.int64)]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return TarShards(str(path), tuple(shards), offsets, classes, labels)


def _check_shard_names(path: str | Path, shards: list[Path]) -> None:
    """Shards of the same name (from different folders) must not share a sample key."""
    groups: dict[str, list[Path]] = {}
    for shard in shards:
        groups.setdefault(shard.name, []).append(shard)
    for same in groups.values():
        if len(same) < 2:
            continue
        seen: set[str] = set()
        for shard in same:
            for key, _, _ in _samples(shard, read_images=False):
                if key in seen:
                    raise DeepCoreError(
                        f"tar shards {path} repeat the key {key!r} (same shard name twice?)"
                    )
                seen.add(key)
