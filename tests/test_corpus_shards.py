"""Sharded inputs (.npy shards, Parquet, Arrow) and Parquet outputs of deepcore-prune."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from deep_core.cli.prune import main

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _run(*args: object) -> int:
    return main([str(a) for a in args] + ["--quiet"])


@pytest.fixture
def corpus(tmp_path) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((330, 16)).astype(np.float32)
    x[300:320] = x[:20] + 1e-4  # near-duplicates
    keys = [f"doc-{i:04d}" for i in range(len(x))]
    np.save(tmp_path / "all.npy", x)
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    return x, keys


METHOD = ["--selection", "SemDeDup", "--num-clusters", 4, "--eps", 0.01]


def _reference(tmp_path: Path) -> tuple[str, str]:
    out = tmp_path / "single"
    args = ["--features", tmp_path / "all.npy", "--keys", tmp_path / "keys.txt", *METHOD]
    assert _run(*args, "--out-dir", out) == 0
    return (out / "kept_keys.txt").read_text(), (out / "scores.csv").read_text()


def _split(n: int) -> list[tuple[int, int]]:
    bounds = [0, 7, 100, 101, 250, n]  # uneven, one shard of a single row
    return list(zip(bounds[:-1], bounds[1:]))


def test_npy_shards_folder_and_glob_equal_one_file(corpus, tmp_path) -> None:
    x, _ = corpus
    kept, scores = _reference(tmp_path)
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, (lo, hi) in enumerate(_split(len(x))):
        # part-2 must come before part-10: natural order, not string order
        np.save(folder / f"part-{[0, 1, 2, 10, 11][i]}.npy", x[lo:hi])
    for spec in (folder, f"{folder}/part-*.npy"):
        out = tmp_path / f"out-{len(str(spec))}"
        args = ["--features", spec, "--keys", tmp_path / "keys.txt", *METHOD, "--out-dir", out]
        assert _run(*args) == 0
        assert (out / "kept_keys.txt").read_text() == kept
        assert (out / "scores.csv").read_text() == scores
        assert list((out / "cache").glob("features-*.npy"))
    # re-run: the gathered copy is reused
    assert _run("--features", folder, "--keys", tmp_path / "keys.txt", *METHOD,
                "--out-dir", tmp_path / f"out-{len(str(folder))}") == 0  # fmt: skip


@pytest.mark.parametrize("layout", ["parquet-fixed", "parquet-list", "arrow"])
def test_tables_equal_one_file_and_parquet_output(corpus, tmp_path, layout: str) -> None:
    x, keys = corpus
    kept, scores = _reference(tmp_path)
    folder = tmp_path / layout
    folder.mkdir()
    for i, (lo, hi) in enumerate(_split(len(x))):
        flat = pa.array(x[lo:hi].reshape(-1))
        emb = (
            pa.FixedSizeListArray.from_arrays(flat, x.shape[1])
            if layout == "parquet-fixed"
            else pa.ListArray.from_arrays(pa.array(np.arange(hi - lo + 1) * x.shape[1]), flat)
        )
        other = pa.array([1] * (hi - lo))
        table = pa.table({"id": pa.array(keys[lo:hi]), "vec": emb, "other": other})
        if layout == "arrow":
            with pa.OSFile(str(folder / f"part-{i}.arrow"), "wb") as f:
                with pa.ipc.new_file(f, table.schema) as w:
                    w.write_table(table, max_chunksize=40)
        else:
            pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=40)
    out = tmp_path / "out"
    args = ["--features", folder, "--embedding-column", "vec", "--key-column", "id", *METHOD]
    assert _run(*args, "--out-dir", out) == 0
    assert (out / "kept_keys.txt").read_text() == kept
    assert (out / "scores.csv").read_text() == scores
    pout = tmp_path / "pout"
    assert _run(*args, "--out-dir", pout, "--output-format", "parquet") == 0
    assert not (pout / "kept_keys.txt").exists()
    assert pq.read_table(pout / "kept_keys.parquet").column("key").to_pylist() == kept.split()
    table = pq.read_table(pout / "scores.parquet").to_pydict()
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert table["key"] == [r["key"] for r in rows] and table["group"] == [r["group"] for r in rows]
    assert table["kept"] == [r["kept"] == "1" for r in rows]
    np.testing.assert_allclose(table["score"], [float(r["score"]) for r in rows], rtol=1e-8)


def _table(path: Path, **columns) -> None:
    pq.write_table(pa.table(columns), path)


def test_bad_shards_are_one_line_errors(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = []
    mixed = bad / "mixed"
    mixed.mkdir()
    np.save(mixed / "a.npy", np.ones((3, 2), np.float32))
    _table(mixed / "b.parquet", key=["x"], embedding=[[1.0, 2.0]])
    cases.append((mixed, "mixes"))
    empty = bad / "empty"
    empty.mkdir()
    cases.append((empty, "no .npy"))
    ragged = bad / "ragged"
    ragged.mkdir()
    _table(ragged / "a.parquet", key=["x", "y"], embedding=[[1.0, 2.0], [1.0]])
    cases.append((ragged, "different lengths"))
    dup = bad / "dup"
    dup.mkdir()
    _table(dup / "a.parquet", key=["x", "x"], embedding=[[1.0, 2.0], [1.0, 3.0]])
    cases.append((dup, "repeats the key 'x'"))
    nocol = bad / "nocol"
    nocol.mkdir()
    _table(nocol / "a.parquet", id=["x"], embedding=[[1.0, 2.0]])
    cases.append((nocol, "no column 'key'"))
    dims = bad / "dims"
    dims.mkdir()
    np.save(dims / "a.npy", np.ones((3, 2), np.float32))
    np.save(dims / "b.npy", np.ones((3, 4), np.float32))
    cases.append((dims, "has 4 dims"))
    nan = bad / "nan"
    nan.mkdir()
    np.save(nan / "a.npy", np.ones((3, 2), np.float32))
    np.save(nan / "b.npy", np.array([[1.0, np.nan]], np.float32))
    cases.append((nan, "NaN or infinite values (first at row 3)"))
    cases.append((tmp_path / "missing-*.npy", "no .npy"))
    for spec, msg in cases:
        capsys.readouterr()
        rc = _run("--features", spec, "--selection", "SSP", "--fraction", 0.5,
                  "--num-clusters", 1, "--out-dir", out)  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and msg in err[-1] and err[-1].startswith("error:"), (spec, err)
        assert not out.exists()
    rc = _run("--features", dup, "--keys", tmp_path / "k.txt", "--selection", "SSP",
              "--fraction", 0.5, "--out-dir", out)  # fmt: skip
    assert rc == 2 and "tables carry a key column" in capsys.readouterr().err
