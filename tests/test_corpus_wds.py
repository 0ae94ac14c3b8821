"""``deepcore-prune`` on WebDataset tar shards: keys ``<shard>/<key>``, ``.cls`` labels."""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deep_core.cli.prune import main
from deep_core.corpus.wds import scan_tars


def _image(rng: np.random.Generator, shade: int, fmt: str) -> bytes:
    a = rng.integers(0, 256, (16, 16, 3)) // 2 + shade
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def shards(tmp_path) -> Path:
    """shards/shard-000.tar and shard-001.tar, 6 samples each (PNG / JPEG, .cls 0..2);
    shard-001's sample ``s05`` is a byte copy of shard-000's ``s01``."""
    rng = np.random.default_rng(0)
    root = tmp_path / "shards"
    root.mkdir()
    images = {}
    for s in range(2):
        members = []
        for i in range(6):
            cls = i % 3
            ext, fmt = ("png", "PNG") if i % 2 == 0 else ("JPG", "JPEG")
            data = _image(rng, 60 * cls, fmt)
            if (s, i) == (1, 5):
                ext, data = "JPG", images[(0, 1)]
            images[(s, i)] = data
            members += [
                (f"s{i:02d}.{ext}", data),
                (f"s{i:02d}.cls", f"{cls}\n".encode()),
                (f"s{i:02d}.json", b"{}"),
            ]
        _write_tar(root / f"shard-{s:03d}.tar", members)
    return root


def _run(*args: object) -> int:
    return main([str(a) for a in args] + ["--quiet"])


def test_scan_reads_keys_and_cls_labels(shards) -> None:
    t = scan_tars(shards)
    keys = t.key_source()  # read one shard at a time, never held together
    assert keys.read(0)[:2] == ["shard-000/s00", "shard-000/s01"]
    assert keys.num_rows == 12 and keys.read(1)[-1] == "shard-001/s05"
    assert t.classes == ("0", "1", "2")
    assert t.labels.tolist() == [0, 1, 2] * 4


@pytest.mark.parametrize("form", ["folder", "glob", "file"])
def test_semdedup_drops_the_copy_across_shards(shards, tmp_path, form) -> None:
    corpus = {
        "folder": shards,
        "glob": shards / "shard-*.tar",
        "file": shards / "shard-001.tar",
    }[form]
    out = tmp_path / "out"
    rc = _run("--corpus-path", corpus, "--model-name", "pixels", "--selection", "SemDeDup",
              "--eps", 0.0, "--num-clusters", 2, "--out-dir", out)  # fmt: skip
    assert rc == 0
    kept = (out / "kept_keys.txt").read_text().splitlines()
    if form == "file":
        assert kept == [f"shard-001/s{i:02d}" for i in range(6)]
    else:
        assert len(kept) == 11
        assert len(set(kept) & {"shard-000/s01", "shard-001/s05"}) == 1
    assert not (out / "kept samples").exists()  # no copy for tar input


def test_cls_labels_are_the_supervised_groups(shards, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["--corpus-path", shards, "--selection", "KMeansQuantile", "--supervised",
            "--fraction", 0.5, "--out-dir", out]  # fmt: skip
    assert _run(*args) == 0
    capsys.readouterr()
    assert _run(*args) == 0  # the shards' embeddings are cached by their stat
    assert "embeddings of" in capsys.readouterr().err
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["key"]: r["group"] for r in rows}["shard-001/s02"] == "2"
    assert {r["group"] for r in rows} == {"0", "1", "2"}


def test_corrupt_member_is_one_line_exit_2_and_no_output(shards, tmp_path, capsys) -> None:
    _write_tar(shards / "shard-002.tar", [("bad.png", b"not a png"), ("bad.cls", b"1")])
    out = tmp_path / "out"
    rc = _run("--corpus-path", shards, "--selection", "SemDeDup", "--eps", 0.0,
              "--num-clusters", 2, "--out-dir", out)  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shard-002/bad" in err[0], err
    assert not out.exists()


def test_copy_is_refused_and_members_without_image_are_named(shards, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["--selection", "SemDeDup", "--eps", 0.0, "--out-dir", out]
    assert _run("--corpus-path", shards, "--copy", *args) == 2
    assert "--copy" in capsys.readouterr().err
    _write_tar(shards / "shard-002.tar", [("x.cls", b"1")])
    assert _run("--corpus-path", shards, *args) == 2
    assert "'x' has no image member" in capsys.readouterr().err
    assert not out.exists()
