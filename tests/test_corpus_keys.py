"""Keys read one part at a time: the outputs equal the in-memory writers', no list of
every key is built on the sharded paths, and a failure mid-write leaves no output."""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from deep_core.cli.prune import main
from deep_core.corpus import keys as keys_mod
from deep_core.corpus import outputs
from deep_core.corpus.keys import KeyFile, KeyList, RowNumbers, UniqueKeys, scan_key_file
from deep_core.corpus.outputs import write_key_outputs
from deep_core.corpus.shards import TableKeys
from deep_core.errors import DeepCoreError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

BOUNDS = [0, 7, 100, 101, 101, 250, 330]  # uneven parts, one of a single row, one empty


def _keys(n: int) -> list[str]:
    """Long-ish keys in shuffled order, with characters the CSV writer must quote."""
    rng = np.random.default_rng(5)
    extra = ["", ",comma", '"quoted"', " space", "é-ü", "\r"]
    keys = [f"shard/{i * 7919 % 1000:04d}/sample-{i}{extra[i % len(extra)]}" for i in range(n)]
    return [keys[i] for i in rng.permutation(n)]


# -- the in-memory writers before keys were read by part, transcribed -------------------
def _reference(folder: Path, keys, names, groups, scores, kept) -> None:
    kept_keys = sorted(keys[i] for i in np.flatnonzero(kept))
    with open(folder / "kept_keys.txt", "w", newline="\n") as f:
        f.writelines(k + "\n" for k in kept_keys)
    with open(folder / "scores.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["key", "group", "score", "kept"])
        for k, g, s, m in zip(keys, groups.tolist(), scores.tolist(), kept.tolist()):
            w.writerow([k, names[g], f"{s:.9g}", int(m)])
    pq.write_table(pa.table({"key": pa.array(kept_keys, pa.string())}),
                   folder / "kept_keys.parquet")  # fmt: skip
    pq.write_table(
        pa.table(
            {
                "key": pa.array(keys, pa.string()),
                "group": pa.array([names[g] for g in groups], pa.string()),
                "score": pa.array(scores.astype(np.float64)),
                "kept": pa.array(kept),
            }
        ),
        folder / "scores.parquet",
    )


def _arrays(n: int):
    rng = np.random.default_rng(1)
    names = ["a", "b,c", "7"]
    groups = rng.integers(0, 3, n)
    scores = rng.standard_normal(n).astype(np.float32)
    scores[::17] = np.nan
    kept = rng.random(n) < 0.6
    return names, groups, scores, kept


def _same_outputs(got: Path, want: Path, output_format: str) -> None:
    if output_format == "text":
        for name in ("kept_keys.txt", "scores.csv"):
            assert (got / name).read_bytes() == (want / name).read_bytes(), name
    else:
        for name in ("kept_keys.parquet", "scores.parquet"):
            g, w = pq.read_table(got / name), pq.read_table(want / name)
            assert g.schema == w.schema, name
            for column in g.column_names:  # NaN scores: compared as equal
                np.testing.assert_array_equal(g[column].to_numpy(), w[column].to_numpy())
    assert [p.name for p in got.iterdir() if p.name.startswith(".")] == []  # no parts left


def _table_shards(folder: Path, keys: list[str], x: np.ndarray | None = None) -> list[Path]:
    folder.mkdir()
    paths = []
    for i, (lo, hi) in enumerate(zip(BOUNDS[:-1], BOUNDS[1:])):
        columns = {"id": pa.array(keys[lo:hi], pa.string())}
        if x is not None:
            columns["vec"] = pa.FixedSizeListArray.from_arrays(
                pa.array(x[lo:hi].reshape(-1)), x.shape[1]
            )
        paths.append(folder / f"part-{i}.parquet")
        pq.write_table(pa.table(columns), paths[-1], row_group_size=40)
    return paths


@pytest.mark.parametrize("output_format", ["text", "parquet"])
@pytest.mark.parametrize("source", ["list", "table", "key-file", "row-numbers"])
def test_part_by_part_outputs_equal_the_in_memory_writers(
    tmp_path, monkeypatch, source: str, output_format: str
) -> None:
    n = BOUNDS[-1]
    monkeypatch.setattr(keys_mod, "PART_ROWS", 64)  # key files and row numbers: 6 parts
    keys = _keys(n) if source != "row-numbers" else [str(i) for i in range(n)]
    if source == "list":
        src = KeyList(keys)
    elif source == "table":
        src = TableKeys(tuple(_table_shards(tmp_path / "shards", keys)), "id")
    elif source == "key-file":
        keys = [k.replace("\r", "") for k in keys]  # a keys file has no carriage return
        (tmp_path / "keys.txt").write_bytes("".join(k + "\r\n" for k in keys).encode())
        src = scan_key_file(tmp_path / "keys.txt", n)
    else:
        src = RowNumbers(n)
    assert src.num_parts == {"list": 1, "table": 6}.get(source, 6)
    names, groups, scores, kept = _arrays(n)
    want, got = tmp_path / "want", tmp_path / "got"
    want.mkdir()
    got.mkdir()
    _reference(want, keys, names, groups, scores, kept)
    write_key_outputs(got, src, output_format=output_format, group_names=names,
                      groups=groups, scores=scores, kept=kept)  # fmt: skip
    _same_outputs(got, want, output_format)


def test_ray_tasks_write_the_same_files(tmp_path) -> None:
    """Also with a worker killed after its first part (Ray retries the part)."""
    ray = pytest.importorskip("ray")
    from deep_core.corpus.ray_engine import KILL_ONCE_ENV, RayEngine

    if ray.is_initialized():
        pytest.skip("needs its own Ray session (the kill hook is a worker environment)")

    n = BOUNDS[-1]
    keys = _keys(n)
    src = TableKeys(tuple(_table_shards(tmp_path / "shards", keys)), "id")
    names, groups, scores, kept = _arrays(n)
    want = tmp_path / "want"
    want.mkdir()
    _reference(want, keys, names, groups, scores, kept)
    marker = tmp_path / "killed-worker.pid"
    env = {"env_vars": {KILL_ONCE_ENV: str(marker)}}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=env)
    try:
        with RayEngine() as engine:
            for output_format in ("text", "parquet"):
                got = tmp_path / f"got-{output_format}"
                got.mkdir()
                write_key_outputs(got, src, output_format=output_format, engine=engine,
                                  group_names=names, groups=groups, scores=scores, kept=kept)
                _same_outputs(got, want, output_format)
                assert marker.is_file()  # one worker was killed, in the first of the two
            # a part that fails in a worker: one-line error, nothing left in the stage
            (tmp_path / "shards" / "part-4.parquet").unlink()
            stage = tmp_path / "stage"
            stage.mkdir()
            with pytest.raises(DeepCoreError, match=r"^cannot read .*part-4.parquet: [^\n]*$"):
                write_key_outputs(stage, src, output_format="text", engine=engine,
                                  group_names=names, groups=groups, scores=scores, kept=kept)
            assert list(stage.iterdir()) == []
    finally:
        ray.shutdown()


# -- the sharded paths never hold every key ---------------------------------------------
def _spy(monkeypatch, cls, reads: list[int]) -> None:
    original = cls.read

    def read(self, part: int) -> list[str]:
        out = original(self, part)
        reads.append(len(out))
        return out

    monkeypatch.setattr(cls, "read", read)


def _no_key_list(monkeypatch) -> list[int]:
    """Record the length of every key list read or hashed; a KeyList is an error."""
    lengths: list[int] = []
    _spy(monkeypatch, TableKeys, lengths)
    _spy(monkeypatch, KeyFile, lengths)
    _spy(monkeypatch, RowNumbers, lengths)
    add = UniqueKeys.add

    def spy_add(self, keys: list[str]) -> None:
        lengths.append(len(keys))
        add(self, keys)

    monkeypatch.setattr(UniqueKeys, "add", spy_add)

    def no_list(self, keys) -> None:
        raise AssertionError("a list of every key was built")

    monkeypatch.setattr(KeyList, "__init__", no_list)
    return lengths


METHOD = ["--selection", "SemDeDup", "--num-clusters", 4, "--eps", 0.01, "--quiet"]


def _corpus() -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((BOUNDS[-1], 16)).astype(np.float32)
    x[300:320] = x[:20] + 1e-4  # near-duplicates
    return x, [k.replace("\r", "") for k in _keys(len(x))]  # also written as a keys file


def _cli(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize("output_format", ["text", "parquet"])
def test_tables_are_read_one_file_at_a_time(tmp_path, monkeypatch, output_format) -> None:
    x, keys = _corpus()
    _table_shards(tmp_path / "shards", keys, x)
    lengths = _no_key_list(monkeypatch)
    out = tmp_path / "out"
    assert _cli("--features", tmp_path / "shards", "--embedding-column", "vec",
                "--key-column", "id", *METHOD, "--output-format", output_format,
                "--out-dir", out) == 0  # fmt: skip
    sizes = np.diff(BOUNDS).tolist()
    # gathering hashes the keys of one record batch at a time; the outputs read each
    # file's keys once, in order
    hashed = lengths[: -len(sizes)]
    assert max(hashed) <= max(sizes) and sum(hashed) == len(x)
    assert lengths[-len(sizes) :] == sizes
    monkeypatch.undo()
    np.save(tmp_path / "all.npy", x)
    (tmp_path / "keys.txt").write_text("".join(k + "\n" for k in keys))
    ref = tmp_path / "ref"
    assert _cli("--features", tmp_path / "all.npy", "--keys", tmp_path / "keys.txt", *METHOD,
                "--output-format", output_format, "--out-dir", ref) == 0  # fmt: skip
    _same_outputs(out, ref, output_format)


def test_npy_shards_with_a_keys_file_read_it_by_parts(tmp_path, monkeypatch) -> None:
    x, keys = _corpus()
    (tmp_path / "shards").mkdir()
    for i, (lo, hi) in enumerate(zip(BOUNDS[:-1], BOUNDS[1:])):
        np.save(tmp_path / "shards" / f"part-{i}.npy", x[lo:hi])
    (tmp_path / "keys.txt").write_text("".join(k + "\n" for k in keys))
    monkeypatch.setattr(keys_mod, "PART_ROWS", 50)
    lengths = _no_key_list(monkeypatch)
    out = tmp_path / "out"
    assert _cli("--features", tmp_path / "shards", "--keys", tmp_path / "keys.txt", *METHOD,
                "--out-dir", out) == 0  # fmt: skip
    assert lengths == [50] * 6 + [30] + [50] * 6 + [30]  # the check, then the outputs
    lengths.clear()
    out2 = tmp_path / "out2"
    assert _cli("--features", tmp_path / "shards", *METHOD, "--out-dir", out2) == 0
    assert lengths == [50] * 6 + [30]  # row numbers
    rows = (out2 / "scores.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(i) for i in range(len(x))]


def test_tar_shards_read_their_keys_one_shard_at_a_time(tmp_path, monkeypatch) -> None:
    from PIL import Image

    from deep_core.corpus.wds import TarKeys

    rng = np.random.default_rng(0)
    root = tmp_path / "tars"
    root.mkdir()
    for s in range(3):
        with tarfile.open(root / f"shard-{s}.tar", "w") as tar:
            for i in range(4):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
                info = tarfile.TarInfo(f"s{i}.png")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
    lengths = _no_key_list(monkeypatch)
    _spy(monkeypatch, TarKeys, lengths)
    out = tmp_path / "out"
    assert _cli("--corpus-path", root, "--selection", "SSP", "--fraction", 0.5,
                "--num-clusters", 2, "--out-dir", out, "--quiet") == 0  # fmt: skip
    assert lengths == [4, 4, 4]
    rows = (out / "scores.csv").read_text().splitlines()[1:]
    want = [f"shard-{s}/s{i}" for s in range(3) for i in range(4)]
    assert [r.split(",")[0] for r in rows] == want


# -- a failure mid-write leaves no partial output ----------------------------------------
@pytest.mark.parametrize("output_format", ["text", "parquet"])
def test_failure_mid_write_leaves_no_output(tmp_path, monkeypatch, capsys, output_format):
    x, keys = _corpus()
    _table_shards(tmp_path / "shards", keys, x)
    args = ["--features", tmp_path / "shards", "--embedding-column", "vec", "--key-column",
            "id", *METHOD, "--output-format", output_format]  # fmt: skip
    read = TableKeys.read
    calls: list[int] = []

    def failing(self, part: int) -> list[str]:
        calls.append(part)
        if part == 3:  # parts 0-2 are written by now
            raise DeepCoreError("disk gone")
        return read(self, part)

    out = tmp_path / "out"
    monkeypatch.setattr(TableKeys, "read", failing)
    assert _cli(*args, "--out-dir", out) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: disk gone"
    assert calls == [0, 1, 2, 3] and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["shards"]  # no staging folder left
    # an earlier run's outputs stay as they were
    monkeypatch.undo()
    assert _cli(*args, "--out-dir", out) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(TableKeys, "read", failing)
    assert _cli(*args, "--eps", 0.5, "--out-dir", out) == 2  # other outputs, had it ended
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_part_file_writer_failure_leaves_no_output(tmp_path, monkeypatch) -> None:
    n = BOUNDS[-1]
    src = TableKeys(tuple(_table_shards(tmp_path / "shards", _keys(n))), "id")
    names, groups, scores, kept = _arrays(n)
    stage = tmp_path / "stage"
    stage.mkdir()
    original = outputs.write_key_part

    def crash(keys, part, *rest) -> None:
        if part == 2:
            raise OSError("no space left on device")
        original(keys, part, *rest)

    monkeypatch.setattr(outputs, "write_key_part", crash)
    with pytest.raises(OSError):
        write_key_outputs(stage, src, output_format="parquet", group_names=names,
                          groups=groups, scores=scores, kept=kept)  # fmt: skip
    assert list(stage.iterdir()) == []


# -- keys files -----------------------------------------------------------------------------
def test_key_file_checks_stream_and_name_the_first_problem(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(keys_mod, "PART_ROWS", 2)
    path = tmp_path / "k.txt"
    cases = [
        ("a\nb\nc", None),  # no final line ending
        ("a\r\nb\r\nc\r\n", None),
        ("a\nb\n", "has 2 lines but features has 3 rows"),
        ("a\n\nc\n", "has an empty line (line 2)"),
        ("a\nb\rx\nc\n", "carriage return inside line 2"),
        ("a\nb\nb\n", "repeats the key 'b'"),
        ("a\nb\na\n", "repeats the key 'a'"),
    ]
    for text, msg in cases:
        path.write_bytes(text.encode())
        if msg is None:
            src = scan_key_file(path, 3)
            assert [k for p in range(src.num_parts) for k in src.read(p)] == ["a", "b", "c"]
        else:
            with pytest.raises(DeepCoreError, match=msg.replace("(", r"\(").replace(")", r"\)")):
                scan_key_file(path, 3)


def test_hash_collisions_are_told_from_repeats(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(keys_mod, "hash", lambda key: len(key), raising=False)
    path = tmp_path / "k.txt"
    path.write_text("ab\ncd\nef\n")  # every hash equal, no key repeated
    assert scan_key_file(path, 3).num_rows == 3
    path.write_text("ab\ncd\nef\ncd\nab\n")
    with pytest.raises(DeepCoreError, match="repeats the key 'cd'"):
        scan_key_file(path, 5)


def test_table_keys_cast_integers_and_reject_empty_keys(tmp_path, capsys) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    pq.write_table(pa.table({"key": [10, 11], "embedding": [[1.0, 2.0], [2.0, 1.0]]}),
                   folder / "a.parquet")  # fmt: skip
    assert TableKeys((folder / "a.parquet",), "key").read(0) == ["10", "11"]
    pq.write_table(pa.table({"key": ["x", ""], "embedding": [[1.0, 2.0], [2.0, 1.0]]}),
                   folder / "a.parquet")  # fmt: skip
    rc = _cli("--features", folder, "--selection", "SSP", "--fraction", 0.5,
              "--num-clusters", 1, "--out-dir", tmp_path / "out")  # fmt: skip
    assert rc == 2 and "has an empty key or a line break" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Labels: streamed into integer ids, the same as the whole-file reader gave
# ---------------------------------------------------------------------------------------
def _labels_in_memory(path):
    """The former reader: every row's class name as a string, then ids (a transcription)."""
    from deep_core.corpus.embed import _natural

    if path.suffix == ".npy":
        names = [str(int(v)) for v in np.load(path)]
    else:
        lines = path.read_bytes().decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        names = [line.rstrip("\r") for line in lines]
    classes = tuple(sorted(set(names), key=_natural))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[c] for c in names], dtype=np.int64), classes


@pytest.mark.parametrize(
    "name, content",
    [
        ("l.txt", b"dog\ncat\n10\n2\n-3\ndog\n\xc3\xa9t\xc3\xa9\n"),
        ("crlf.txt", b"b\r\na\r\nb\r\n\r\n"),  # CRLF lines and one empty class name
        ("last.txt", b"x\ny\nx"),  # no final newline
        ("ints.npy", None),
    ],
)
def test_streamed_labels_equal_the_whole_file_reader(tmp_path, name, content):
    from deep_core.corpus.embed import load_labels

    path = tmp_path / name
    if content is None:
        np.save(path, np.array([5, -2, 10, 5, 0, 2, -2], dtype=np.int32))
    else:
        path.write_bytes(content)
    expected = _labels_in_memory(path)
    n = len(expected[0])
    ids, classes = load_labels(path, n)
    assert classes == expected[1]
    np.testing.assert_array_equal(ids, expected[0])
    assert ids.dtype == np.int64
    with pytest.raises(DeepCoreError, match=f"has {n:,} entries but {n + 1:,} are needed"):
        load_labels(path, n + 1)


def test_labels_that_are_not_utf8_are_one_line_errors(tmp_path):
    from deep_core.corpus.embed import load_labels

    path = tmp_path / "bad.txt"
    path.write_bytes(b"a\n\xff\n")
    with pytest.raises(DeepCoreError, match="cannot read labels file"):
        load_labels(path, 2)
    with pytest.raises(DeepCoreError, match="labels file not found"):
        load_labels(tmp_path / "missing.npy", 2)
