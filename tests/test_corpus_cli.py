"""``deepcore-prune`` on a small generated image folder and on embedding files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deep_core.cli.prune import main

CLASSES = ("cat", "dog", "ship")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """corpus/<class>/<i>.png (3 x 12 images, 2 exact copies) and target/<class>/ (3 x 5)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, count in (("corpus", 12), ("target", 5)):
        for k, cls in enumerate(CLASSES):
            d = root / name / cls
            d.mkdir(parents=True)
            for i in range(count):
                base = rng.integers(0, 256, (16, 16, 3)) // 2 + 60 * k
                Image.fromarray(base.astype(np.uint8)).save(d / f"{i:03d}.png")
    (root / "corpus" / "cat" / "100.png").write_bytes((root / "corpus/cat/000.png").read_bytes())
    (root / "corpus" / "dog" / "100.png").write_bytes((root / "corpus/dog/003.png").read_bytes())
    return {"corpus": root / "corpus", "target": root / "target"}


def _run(*args: object) -> int:
    return main([str(a) for a in args] + ["--quiet"])


def _scores(out: Path) -> list[dict[str, str]]:
    with open(out / "scores.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_kmeans_quantile_on_an_image_folder(folders, tmp_path) -> None:
    out = tmp_path / "out"
    rc = _run(
        "--corpus-path", folders["corpus"], "--data-path", folders["target"],
        "--selection", "KMeansQuantile", "--num-clusters", 3, "--quantile", 0.5,
        "--out-dir", out, "--draw-histogram",
    )  # fmt: skip
    assert rc == 0
    rows = _scores(out)
    assert len(rows) == 38 and list(rows[0]) == ["key", "group", "score", "kept"]
    kept = (out / "kept_keys.txt").read_text().splitlines()
    assert kept == sorted(kept) and kept == sorted(r["key"] for r in rows if r["kept"] == "1")
    copies = sorted(p.relative_to(out / "hard samples").as_posix()
                    for p in (out / "hard samples").rglob("*.png"))  # fmt: skip
    assert copies == kept  # OUT/hard samples/<class>/<file>
    assert {k.split("/")[0] for k in kept} <= set(CLASSES)
    pngs = sorted(p.name for p in (out / "histograms").glob("*.png"))
    assert "all.png" in pngs and len(pngs) == 4  # all + one per cluster
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_kept"] == len(kept) and summary["options"]["quantile"] == 0.5
    assert list((out / "cache").glob("embeddings-*.npy"))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left


def test_kmeans_quantile_seed_options_on_an_image_folder(folders, tmp_path) -> None:
    for extra, key in ((["--num-clusters", 0], "num_clusters"),
                       (["--centroids", "class_means"], "num_classes")):  # fmt: skip
        out = tmp_path / key
        rc = _run(
            "--corpus-path", folders["corpus"], "--data-path", folders["target"],
            "--selection", "KMeansQuantile", "--quantile", 0.5, "--keys-only",
            "--out-dir", out, *extra,
        )  # fmt: skip
        assert rc == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["info"][key] == len(CLASSES)

def test_supervised_easy_and_rerun_uses_cache(folders, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = [
        "--corpus-path", folders["corpus"], "--data-path", folders["target"],
        "--selection", "KMeansQuantile", "--supervised", "--difficulty", "easy",
        "--fraction", 0.25, "--out-dir", out,
    ]  # fmt: skip
    assert _run(*args) == 0
    first = (out / "kept_keys.txt").read_text()
    assert len(first.splitlines()) == round(0.25 * 38)
    assert (out / "easy samples").is_dir()
    groups = {r["group"] for r in _scores(out)}
    assert groups == set(CLASSES)  # supervised groups are the class names
    capsys.readouterr()
    assert _run(*args, "--keys-only") == 0
    assert "from cache" in capsys.readouterr().err
    assert (out / "kept_keys.txt").read_text() == first
    assert not (out / "easy samples").exists()  # replaced by a keys-only run


def test_semdedup_removes_the_copied_files(folders, tmp_path) -> None:
    out = tmp_path / "out"
    rc = _run("--corpus-path", folders["corpus"], "--selection", "SemDeDup", "--eps", 0.0,
              "--num-clusters", 3, "--out-dir", out, "--keys-only")  # fmt: skip
    assert rc == 0
    kept = set((out / "kept_keys.txt").read_text().splitlines())
    assert len(kept) == 36
    assert len(kept & {"cat/000.png", "cat/100.png"}) == 1
    assert len(kept & {"dog/003.png", "dog/100.png"}) == 1


def test_features_and_keys(tmp_path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 32)).astype(np.float32)
    x[150:160] = x[:10] + 1e-4  # near-duplicates
    np.save(tmp_path / "emb.npy", x)
    keys = [f"doc-{i:04d}" for i in range(200)]
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    base = ["--features", tmp_path / "emb.npy", "--keys", tmp_path / "keys.txt",
            "--selection", "SemDeDup", "--num-clusters", 5, "--fraction", 0.95]  # fmt: skip
    assert _run(*base, "--out-dir", tmp_path / "direct") == 0
    direct = (tmp_path / "direct" / "kept_keys.txt").read_text()
    lines = direct.splitlines()
    assert len(lines) == 190 and lines == sorted(lines) and set(lines) <= set(keys)
    assert all(len({f"doc-{i:04d}", f"doc-{150 + i:04d}"} & set(lines)) == 1 for i in range(10))


def test_dbp_and_ssp_on_features(tmp_path) -> None:
    x = np.random.default_rng(2).standard_normal((300, 6)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    for sel, extra in (("DBP", ["--num-nns", 3, "--dedup-eps", 0.001]), ("SSP", [])):
        out = tmp_path / sel
        rc = _run("--features", tmp_path / "emb.npy", "--selection", sel, "--num-clusters", 6,
                  "--fraction", 0.4, "--out-dir", out, *extra)  # fmt: skip
        assert rc == 0
        assert len((out / "kept_keys.txt").read_text().splitlines()) == 120
        assert not (out / "hard samples").exists()  # nothing to copy from a features file


def _bad_inputs(tmp_path: Path, folders: dict[str, Path]) -> dict[str, list]:
    good = np.ones((10, 4), dtype=np.float32) + np.arange(40, dtype=np.float32).reshape(10, 4)
    np.save(tmp_path / "good.npy", good)
    np.save(tmp_path / "flat.npy", good.ravel())
    nan = good.copy()
    nan[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "keys9.txt").write_text("\n".join(str(i) for i in range(9)) + "\n")
    broken = tmp_path / "broken"
    (broken / "cat").mkdir(parents=True)
    for i in range(3):
        (broken / "cat" / f"{i}.png").write_bytes((folders["corpus"] / "cat/001.png").read_bytes())
    (broken / "cat" / "3.png").write_bytes(b"\x89PNG not really")
    mismatched = tmp_path / "target2"
    for cls in CLASSES[:2]:
        (mismatched / cls).mkdir(parents=True)
        (mismatched / cls / "0.png").write_bytes((folders["corpus"] / "cat/001.png").read_bytes())
    feats = ["--features", tmp_path / "good.npy"]
    return {
        "missing folder": ["--corpus-path", tmp_path / "nope", "--selection", "SSP",
                           "--fraction", 0.5],
        "wrong shape": ["--features", tmp_path / "flat.npy", "--selection", "SSP",
                        "--fraction", 0.5],
        "nan": ["--features", tmp_path / "nan.npy", "--selection", "SSP", "--fraction", 0.5],
        "keys length": [*feats, "--keys", tmp_path / "keys9.txt", "--selection", "SSP",
                        "--fraction", 0.5],
        "unknown selection": [*feats, "--selection", "NoSuchMethod", "--fraction", 0.5],
        "not a corpus method": [*feats, "--selection", "SmallLoss", "--fraction", 0.5],
        "fraction range": [*feats, "--selection", "SSP", "--fraction", 1.5],
        "quantile for semdedup": [*feats, "--selection", "SemDeDup", "--quantile", 0.5],
        "no eps": [*feats, "--selection", "SemDeDup", "--num-clusters", 2],
        "corrupt image": ["--corpus-path", broken, "--selection", "SSP", "--num-clusters", 1,
                          "--fraction", 0.5],
        "mismatched classes": ["--corpus-path", folders["corpus"], "--data-path", mismatched,
                               "--selection", "KMeansQuantile", "--supervised"],
        "model without weights": ["--corpus-path", folders["corpus"], "--selection", "SSP",
                                  "--fraction", 0.5, "--model-name", "resnet18"],
        "copy from features": [*feats, "--selection", "SSP", "--fraction", 0.5, "--copy"],
        "address without ray": [*feats, "--selection", "SSP", "--fraction", 0.5,
                                "--address", "auto"],
    }  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        "missing folder", "wrong shape", "nan", "keys length", "unknown selection",
        "not a corpus method", "fraction range", "quantile for semdedup", "no eps",
        "corrupt image", "mismatched classes", "model without weights",
        "copy from features", "address without ray",
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_no_output(case, folders, tmp_path, capsys) -> None:
    args = _bad_inputs(tmp_path, folders)[case]
    out = tmp_path / "out"
    capsys.readouterr()
    assert _run(*args, "--out-dir", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_corrupt_image_error_names_the_file(folders, tmp_path, capsys) -> None:
    args = _bad_inputs(tmp_path, folders)["corrupt image"]
    assert _run(*args, "--out-dir", tmp_path / "out") == 2
    assert "cat/3.png" in capsys.readouterr().err


def test_torchvision_penultimate_features_from_a_local_state_dict(folders, tmp_path) -> None:
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)  # any head size is accepted
    torch.save({"state_dict": model.state_dict()}, tmp_path / "r18.pth")
    out = tmp_path / "out"
    rc = _run("--corpus-path", folders["corpus"], "--selection", "SSP", "--num-clusters", 3,
              "--fraction", 0.5, "--model-name", "resnet18", "--model-path", tmp_path / "r18.pth",
              "--image-size", 32, "--out-dir", out, "--keys-only")  # fmt: skip
    assert rc == 0
    (emb,) = (out / "cache").glob("embeddings-*.npy")
    x = np.load(emb)
    assert x.shape == (38, 512)  # resnet18's penultimate width
    # Same features as the model without its head, on the same preprocessing.
    from deep_core.corpus.embed import load_image

    model.fc = torch.nn.Identity()
    model.eval()
    img = load_image(folders["corpus"] / "cat/000.png", 32, "cat/000.png")
    with torch.no_grad():
        want = model(torch.from_numpy(img)[None]).numpy()[0]
    np.testing.assert_allclose(x[0], want, rtol=1e-4, atol=1e-5)
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    assert _run("--corpus-path", folders["corpus"], "--selection", "SSP", "--fraction", 0.5,
                "--model-name", "resnet18", "--model-path", tmp_path / "r34.pth",
                "--out-dir", tmp_path / "bad") == 2  # fmt: skip
    assert not (tmp_path / "bad").exists()


def test_every_corpus_method_option_has_its_flag_from_the_declaration():
    """deepcore-prune's method flags are generated (no hand-written list to fall behind)."""
    from deep_core.cli.prune import build_parser
    from deep_core.corpus.run import corpus_methods
    from deep_core.methods import get_method
    from deep_core.options import option_specs

    parser = build_parser()
    dests = {a.dest: a for a in parser._actions}
    for method in corpus_methods():
        for name, spec in option_specs(get_method(method)).items():
            assert name in dests, f"{method}.{name} has no deepcore-prune flag"
            if name != "quantile":  # the budget group's own flag
                assert spec.flag in dests[name].option_strings
    ns = parser.parse_args(
        ["--features", "x.npy", "--selection", "DBP", "--out-dir", "o", "--density", "uniform"]
    )
    assert ns.density == "uniform" and not hasattr(ns, "temperature")  # only given ones
