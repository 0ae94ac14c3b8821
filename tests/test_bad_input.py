"""Bad input and faults, as a new user meets them: one ``error:`` line, exit 2, nothing left.

``CASES`` is the table: command, arguments, expected exit status and message fragment.
Every case also checks that no file was left behind (no run folder, no empty output or
cache folder, no temporary file). Add a row with every new option. Below the table:
data that would run code, a stale warm-up cache, an edited ``config.yaml`` on
``--resume``, locks and the clean-up of killed runs.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from deep_core.cli import prune as prune_cli
from deep_core.cli import report as report_cli
from deep_core.cli import run as run_cli
from deep_core.cli import select as select_cli
from deep_core.errors import DeepCoreError
from deep_core.locks import FolderLock, remove_stale_temp, temp_prefix

REPO = Path(__file__).resolve().parents[1]
FAST = ["--epochs", "1", "-se", "1", "-b", "64", "--progress", "False", "--device", "cpu"]
MAINS = {
    "run": run_cli.main,
    "select": select_cli.main,
    "prune": prune_cli.main,
    "report": report_cli.main,
}


def _png(path: Path, value: int, *, size: int = 8, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65536, (size, size), dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def _image_folder(root: Path, classes: int = 3, per_class: int = 6, *, size: int = 8) -> Path:
    for split, n in (("train", per_class), ("test", 2)):
        for c in range(classes):
            for i in range(n):
                _png(root / split / f"c{c}" / f"{i}.png", 1000 * c + i + (split == "test") * 99,
                     size=size)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Read-only inputs shared by the table's cases."""
    w = tmp_path_factory.mktemp("world")
    (w / "afile").write_text("not a folder\n")
    (w / "folder").mkdir()
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1], dtype=np.int64)
    probs = np.full((8, 3), 1 / 3)
    np.savez(w / "sig.npz", labels=labels, probs=probs)
    (w / "trunc.npz").write_bytes((w / "sig.npz").read_bytes()[:200])
    np.savez(w / "empty.npz", labels=np.zeros(0, np.int64))
    neg = probs.copy()
    neg[0] = [1.5, -0.5, 0.0]
    np.savez(w / "negprobs.npz", labels=labels, probs=neg)
    np.savez(w / "sumprobs.npz", labels=labels, probs=probs * 0.9)
    np.savez(w / "floatclean.npz", labels=labels, clean_labels=labels + 0.5)
    np.savez(w / "rangeclean.npz", labels=labels, clean_labels=labels + 5)
    np.save(w / "feats.npy", np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32))
    (w / "trunc.npy").write_bytes((w / "feats.npy").read_bytes()[:150])
    for name, text in {
        "epochs_abc.yaml": "epochs: abc\n",
        "fraction_str.yaml": "fraction: '0.5'\n",
        "method_options_5.yaml": "method_options: 5\n",
        "python_tag.yaml": "epochs: !!python/object/apply:os.system ['true']\n",
        "list.yaml": "- 1\n- 2\n",
    }.items():
        (w / name).write_text(text)
    (w / "binary.yaml").write_bytes(b"\xff\xfe\x00epochs")
    (w / "weights.pt").write_bytes(b"PK\x03\x04 truncated")
    _image_folder(w / "images")
    (w / "runs" / "r").mkdir(parents=True)
    cfg = {"selection": "Uniform", "fraction": 0.5, "seed": 0}
    (w / "runs" / "r" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (w / "runs" / "r" / "summary.json").write_text(json.dumps({**cfg, "last_acc": 50.0}))
    _image_folder(w / "oneclass", classes=1)
    big = _image_folder(w / "bigimages", size=72)  # file-backed: decoded in workers
    (big / "train" / "c1" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return w


# (cli, arguments, exit status, message fragment); {W} = the inputs, {T} = the case's folder
CASES = [
    # -- deepcore-run: folders and files
    ("run", ["--out-dir", "{W}/afile"], 2, "--out-dir {W}/afile is a file"),
    ("run", ["--out-dir", "{W}/afile/runs"], 2, "is below {W}/afile, which is a file"),
    ("run", ["--out-dir", "{T}/out", "--signals-cache", "{W}/afile"], 2,
     "--signals-cache {W}/afile is a file"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--config", "{W}/nothing.yaml"], 2, "config file not found"),
    ("run", ["--out-dir", "{T}/out", "--selection", "DynUnc", "-se", "1"], 2,
     "DynUnc needs at least 2 warm-up epochs (-se), got 1"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--config", "{W}/epochs_abc.yaml"], 2,
     "epochs must be an integer, got 'abc'"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--config", "{W}/fraction_str.yaml"], 2,
     "fraction must be a number, got '0.5'"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--config", "{W}/method_options_5.yaml"], 2,
     "method_options in the config file must be a mapping"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--config", "{W}/python_tag.yaml"], 2, "cannot parse"),
    ("run", ["--out-dir", "{T}/out", "--config", "{W}/list.yaml"], 2, "must hold a mapping"),
    ("run", ["--out-dir", "{T}/out", "--config", "{W}/binary.yaml"], 2, "cannot"),
    ("run", ["--out-dir", "{T}/out", "--model-path", "{W}/weights.pt", "--selection",
             "SmallLoss"], 2, "cannot read model weights"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--resume", "{W}/folder"], 2, "is not a run directory"),
    # -- deepcore-run: numbers
    ("run", ["--out-dir", "{T}/out", "--seed", "-1"], 2, "seed must be in [0, 4,294,967,295]"),
    ("run", ["--out-dir", "{T}/out", "-wd", "-1"], 2, "weight decay must be in [0, inf)"),
    ("run", ["--out-dir", "{T}/out", "--momentum", "5"], 2, "momentum must be in [0, 1), got 5.0"),
    ("run", ["--out-dir", "{T}/out", "--lr", "nan"], 2, "lr must be in (0, inf)"),
    ("run", ["--out-dir", "{T}/out", "--lr", "inf"], 2, "lr must be in (0, inf)"),
    ("run", ["--out-dir", "{T}/out", "--gamma", "0"], 2, "gamma must be in (0, inf)"),
    ("run", ["--out-dir", "{T}/out", "--min_lr", "-1"], 2, "min lr must be in [0, inf)"),
    ("run", ["--out-dir", "{T}/out", "--num_exp", "0"], 2, "num exp must be in [1, inf)"),
    ("run", ["--out-dir", "{T}/out", "--epochs", "-3"], 2, "epochs must be in [0, inf)"),
    ("run", ["--out-dir", "{T}/out", "-se", "-1"], 2, "selection epochs must be in [0, inf)"),
    ("run", ["--out-dir", "{T}/out", "-b", "0"], 2, "batch size must be in [1, inf)"),
    ("run", ["--out-dir", "{T}/out", "-j", "-2"], 2, "workers must be in [0, inf)"),
    ("run", ["--out-dir", "{T}/out", "--n-train", "0"], 2, "n train must be in [1, inf)"),
    ("run", ["--out-dir", "{T}/out", "--noise-rate", "inf"], 2, "noise rate must be in [0, 1)"),
    ("run", ["--out-dir", "{T}/out", "--milestone", "0", "--scheduler", "MultiStepLR"], 2,
     "milestone must be in [1, inf)"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--fraction", "0.0001"], 2, "keeps none"),
    ("run", ["--out-dir", "{T}/out", "--selection", "Prune4Rel", "--eta", "inf"], 2,
     "Prune4Rel: eta must be in (0, inf), got inf (--eta)"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--selection", "Prune4Rel", "--tau", "2"], 2,
     "Prune4Rel: tau must be in [0, 1], got 2.0 (--tau)"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--dataset", "ImageFolder", "--data_path", "{W}/images",
             "--image-size", "100000"], 2, "image size must be in [8, 1,024]"),  # fmt: skip
    # -- deepcore-run: data
    ("run", ["--out-dir", "{T}/out", "--dataset", "ImageFolder", "--data_path", "{W}/oneclass"],
     2, "has only one class"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--dataset", "ImageFolder", "--data_path", "{W}/bigimages",
             "--image-size", "72", "-j", "2", "--selection", "SmallLoss"], 2,
     "corrupt or unreadable image"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--dataset", "CIFAR10", "--data_path", "{T}/nothing",
             "--download", "True"], 2, "cannot download CIFAR10"),  # fmt: skip
    ("run", ["--out-dir", "{T}/out", "--model", "ResNet18", "--pre-trained", "True",
             "--selection", "SmallLoss"], 2, "cannot reach the network"),  # fmt: skip
    # -- deepcore-select
    ("select", ["--signals", "{W}/sig.npz", "--selection", "Uniform", "--fraction", "0.5",
                "--out", "{W}/folder"], 2, "it is a folder"),  # fmt: skip
    ("select", ["--signals", "{W}/sig.npz", "--selection", "Uniform", "--fraction", "0.5",
                "--out", "{W}/afile/subset.npy"], 2, "cannot write"),  # fmt: skip
    ("select", ["--signals", "{W}/trunc.npz", "--selection", "Uniform", "--fraction", "0.5",
                "--out", "{T}/s.npy"], 2, "truncated or corrupt"),  # fmt: skip
    ("select", ["--signals", "{W}/empty.npz", "--selection", "Uniform", "--fraction", "0.5",
                "--out", "{T}/s.npy"], 2, "holds no samples"),  # fmt: skip
    ("select", ["--signals", "{W}/sig.npz", "--selection", "Uniform", "--fraction", "0.01",
                "--out", "{T}/s.npy"], 2, "keeps none"),  # fmt: skip
    ("select", ["--signals", "{W}/negprobs.npz", "--selection", "SmallLoss", "--fraction", "0.5",
                "--out", "{T}/s.npy"], 2, "'probs' must hold probabilities"),  # fmt: skip
    ("select", ["--signals", "{W}/sumprobs.npz", "--selection", "SmallLoss", "--fraction", "0.5",
                "--out", "{T}/s.npy"], 2, "summing to 1"),  # fmt: skip
    ("select", ["--signals", "{W}/floatclean.npz", "--selection", "Uniform", "--fraction", "0.5",
                "--out", "{T}/s.npy"], 2, "clean_labels must be integers"),  # fmt: skip
    ("select", ["--signals", "{W}/rangeclean.npz", "--selection", "Uniform", "--fraction", "0.5",
                "--out", "{T}/s.npy"], 2, "clean_labels must lie in [0, 3)"),  # fmt: skip
    ("select", ["--signals", "{W}/sig.npz", "--selection", "Uniform", "--fraction", "0.5",
                "--seed", "-1", "--out", "{T}/s.npy"], 2, "seed"),  # fmt: skip
    # -- deepcore-prune
    ("prune", ["--corpus-path", "{W}/images/train", "--selection", "KMeansQuantile",
               "--num-clusters", "3", "--image-size", "100000", "--out-dir", "{T}/out"], 2,
     "--image-size must be in [1, 1024]"),  # fmt: skip
    ("prune", ["--features", "{W}/feats.npy", "--selection", "KMeansQuantile",
               "--out-dir", "{W}/afile"], 2, "is not a folder"),  # fmt: skip
    ("prune", ["--features", "{W}/trunc.npy", "--selection", "KMeansQuantile",
               "--out-dir", "{T}/out"], 2, "trunc.npy"),  # fmt: skip
    # -- deepcore-report
    ("report", ["{W}/afile"], 2, "runs folder not found"),
    ("report", ["{W}/runs", "--output", "{W}/folder"], 2, "it is a folder"),
]


def _ids(case) -> str:
    cli, args, _, _ = case
    return f"{cli}:" + " ".join(a.replace("{W}/", "").replace("{T}/", "") for a in args)[:70]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def offline(monkeypatch):
    """No network: what a download would meet without a connection."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    import torch.hub
    import torchvision.datasets.utils

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")


@pytest.mark.parametrize("cli, args, code, message", CASES, ids=[_ids(c) for c in CASES])
def test_bad_input_table(world, tmp_path, capsys, offline, cli, args, code, message):
    argv = [a.format(W=world, T=tmp_path) for a in args]
    if cli == "run" and "--config" not in args:
        argv = [*FAST, *argv]
    before = _tree(world)
    assert MAINS[cli](argv) == code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err and err[-1].startswith("error: "), err
    assert message.format(W=world, T=tmp_path) in err[-1], err[-1]
    assert not any(line.startswith(("Traceback", "  File ")) for line in err), err
    assert list(tmp_path.iterdir()) == [], "files left: " + ", ".join(sorted(_tree(tmp_path)))
    assert _tree(world) == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seed", "-1"], "seed must be in"),
        (["--config", "/nonexistent.yaml"], "config file not found"),
    ],
)
def test_main_label_noise_script(tmp_path, argv, message):
    """The script the reference sweeps call: the same one line and status, from a shell."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(
        [sys.executable, str(REPO / "main_label_noise.py"), "--out-dir", str(tmp_path / "o"),
         *argv], capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------
# Data never runs code
# ----------------------------------------------------------------------------------
class _Payload:
    """Pickles to "create a file" (harmless; proves whether the loader ran code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_cifar_batch_that_would_run_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "ran"
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "x": _Payload(marker)}
    blob = pickle.dumps(batch, protocol=2)
    pickle.loads(blob)  # the payload is live: a plain unpickler creates the file
    assert marker.exists()
    marker.unlink()
    (folder / "data_batch_1").write_bytes(blob)
    argv = [*FAST, "--dataset", "CIFAR10", "--data_path", str(tmp_path / "data"),
            "--out-dir", str(tmp_path / "out")]  # fmt: skip
    assert run_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: refused or corrupt CIFAR batch"), err
    assert "refusing to load global" in err[-1]
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_object_arrays_are_refused(tmp_path):
    from deep_core.safe_pickle import load_data_pickle

    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": np.array([1, "a"], dtype=object)}, protocol=4))
    with pytest.raises(DeepCoreError, match="object arrays are not allowed"):
        load_data_pickle(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_batches_load_at_every_protocol(tmp_path, protocol):
    from deep_core.safe_pickle import load_data_pickle

    batch = {"batch_label": "b", "labels": [3, 1], "data": np.arange(6, dtype=np.uint8),
             "filenames": [b"a.png", b"b.png"], "meta": (1, 2.5, None, True)}  # fmt: skip
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    got = load_data_pickle(path)
    assert got.keys() == batch.keys() and got["filenames"] == batch["filenames"]
    np.testing.assert_array_equal(got["data"], batch["data"])
    assert got["meta"] == batch["meta"] and got["labels"] == [3, 1]


def test_real_cifar_batches_read_as_pickle_reads_them(cifar10_root):
    from deep_core.safe_pickle import load_data_pickle

    folder = cifar10_root / "cifar-10-batches-py"
    for name in ("test_batch", "batches.meta"):
        with open(folder / name, "rb") as f:
            trusted = pickle.load(f, encoding="latin1")  # our own file, made by the fixture
        got = load_data_pickle(folder / name)
        assert got.keys() == trusted.keys()
        for k, v in trusted.items():
            if isinstance(v, np.ndarray):
                assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
            else:
                assert got[k] == v


def test_cifar_n_labels_out_of_range_are_refused(cifar10_root, tmp_path, capsys):
    import torch

    from deep_core.io import load_npz

    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for f in (cifar10_root / "cifar-10-batches-py").iterdir():
        (folder / f.name).symlink_to(f)
    arrays = load_npz(REPO / "data" / "cifar10n.npz")
    arrays["worse_label"] = arrays["worse_label"].astype(np.int64)
    arrays["worse_label"][7] = 10
    torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, folder / "CIFAR-10_human.pt")
    argv = [*FAST, "--dataset", "CIFAR10", "--data_path", str(tmp_path / "data"),
            "--noise-type", "realW", "--out-dir", str(tmp_path / "out")]  # fmt: skip
    assert run_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "'worse_label'" in err[-1] and "lie outside [0, 10)" in err[-1], err
    assert not (tmp_path / "out").exists()


def test_no_plain_unpickling_of_user_files():
    """Only the restricted unpickler reads pickles; torch.load only with weights_only."""
    offenders = []
    for path in (REPO / "deep_core").rglob("*.py"):
        text = path.read_text()
        for no, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            if "pickle.load" in code or "allow_pickle=True" in code or "pickle.Unpickler(" in code:
                if path.name != "safe_pickle.py":
                    offenders.append(f"{path.name}:{no}")
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{path.name}:{no}")
    assert offenders == []


# ----------------------------------------------------------------------------------
# No stale results: the warm-up cache follows the data
# ----------------------------------------------------------------------------------
@pytest.fixture
def messages():
    """Messages of the ``deep_core`` logger (it does not propagate to pytest's caplog)."""
    import logging

    got: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    handler = Collect(level=logging.INFO)
    logger = logging.getLogger("deep_core")
    logger.addHandler(handler)
    yield got
    logger.removeHandler(handler)


def test_stale_cache_is_not_used_after_the_data_changes(tmp_path, messages):
    data = _image_folder(tmp_path / "data")
    cache = tmp_path / "cache"

    def run(out: str) -> list[str]:
        messages.clear()
        argv = [*FAST, "--dataset", "ImageFolder", "--data_path", str(data), "--selection",
                "SmallLoss", "--fraction", "0.5", "--dry-run", "--noise-rate", "0.2",
                "--signals-cache", str(cache), "--out-dir", str(tmp_path / out)]  # fmt: skip
        assert run_cli.main(argv) == 0
        return [m for m in messages if "warm-up member" in m or "signals cache entry" in m]

    assert "recorded and cached" in run("a")[0]
    assert "loaded from cache" in run("b")[0]
    # every image rewritten (same names, same count), two files moved between classes
    for p in sorted((data / "train").rglob("*.png")):
        _png(p, hash(p.name) % 1000 + 7)
    os.replace(data / "train/c0/0.png", data / "train/c1/x.png")
    os.replace(data / "train/c1/1.png", data / "train/c0/x.png")
    assert "recorded and cached" in run("c")[0]
    (hit,) = run("d")
    assert "loaded from cache" in hit
    # a complete entry whose contents were altered (rows reordered) is recorded again
    entry = Path(hit.rsplit(" ", 1)[1])
    probs = np.load(entry / "probs.npy")
    np.save(entry / "probs.npy", probs[::-1].copy())
    logged = run("e")
    assert any("fails its checksum (probs.npy changed)" in m for m in logged), logged
    assert "recorded and cached" in logged[-1]
    assert "loaded from cache" in run("f")[0]
    # moving two files between classes alone (same count, same bytes) changes the key too
    os.replace(data / "train/c0/x.png", data / "train/c1/y.png")
    os.replace(data / "train/c1/x.png", data / "train/c0/y.png")
    assert "recorded and cached" in run("g")[0]


def test_file_fingerprint_follows_content_names_and_order(tmp_path):
    from deep_core.fingerprint import hash_files

    files = []
    for i in range(5):
        files.append(tmp_path / f"{i}.bin")
        files[-1].write_bytes(bytes([i]) * 100)
    paths = [str(p) for p in files]
    base = hash_files(paths)
    assert hash_files(paths) == base
    assert hash_files(paths[::-1]) != base
    st = os.stat(paths[2])
    files[2].write_bytes(bytes([9]) * 100)  # same size, same mtime: the sampled bytes differ
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert hash_files(paths) != base
    with pytest.raises(DeepCoreError, match="cannot read"):
        hash_files([*paths, str(tmp_path / "missing.bin")])


def test_sixteen_bit_images_are_scaled_not_wrapped(tmp_path):
    from deep_core.datasets.base import decode_image_file

    path = tmp_path / "g16.png"
    Image.fromarray(np.array([[0, 257, 514, 32896, 65535]], dtype=np.uint16)).save(path)
    img = decode_image_file(path)
    assert img.dtype.is_floating_point is False and img.shape == (3, 1, 5)
    assert img[0, 0].tolist() == [0, 1, 2, 128, 255]


# ----------------------------------------------------------------------------------
# Run folders: manifest, resume, locks, clean-up
# ----------------------------------------------------------------------------------
@pytest.fixture
def finished_run(tmp_path) -> Path:
    """A complete short run whose summary is removed: resumable from its last checkpoint."""
    out = tmp_path / "runs"
    assert run_cli.main([*FAST, "--fraction", "0.5", "--out-dir", str(out)]) == 0
    (run,) = [p for p in out.iterdir() if p.name != "signals-cache"]
    (run / "summary.json").unlink()
    return run


def _edit_config(run: Path, **changes) -> None:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg.update(changes)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"selection": "SmallLoss"}, "(changed: selection)"),
        ({"epochs": 5, "lr": 0.5}, "(changed: epochs, lr)"),
        ({"seed": 3}, "(changed: seed)"),
    ],
    ids=str,
)
def test_resume_refuses_an_edited_config(finished_run, capsys, changes, message):
    _edit_config(finished_run, **changes)
    assert run_cli.main(["--resume", str(finished_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: config.yaml of") and message in err[-1], err
    assert not (finished_run / "summary.json").exists()


def test_resume_refuses_an_empty_config_or_a_missing_manifest(finished_run, capsys):
    text = (finished_run / "config.yaml").read_text()
    (finished_run / "config.yaml").write_text("")
    assert run_cli.main(["--resume", str(finished_run)]) == 2
    assert "config.yaml is empty" in capsys.readouterr().err
    (finished_run / "config.yaml").write_text(text)
    (finished_run / "manifest.json").unlink()
    assert run_cli.main(["--resume", str(finished_run)]) == 2
    assert "has no manifest.json" in capsys.readouterr().err


def test_resume_accepts_settings_that_do_not_change_results(finished_run, capsys):
    assert run_cli.main(["--resume", str(finished_run), "--epochs", "3"]) == 2
    assert "cannot change: epochs" in capsys.readouterr().err
    _edit_config(finished_run, workers=1, progress=True)
    assert run_cli.main(["--resume", str(finished_run), "--device", "cpu", "-j", "0"]) == 0
    assert (finished_run / "summary.json").is_file()


def test_a_locked_run_folder_is_not_trained_twice(finished_run, capsys, messages):
    with FolderLock(finished_run, what="run folder"):
        assert run_cli.main(["--resume", str(finished_run)]) == 2
        err = capsys.readouterr().err
        assert "is in use by another process (host" in err and f"pid {os.getpid()}" in err
        # a sweep with --skip-complete leaves it to the process that holds it
        argv = [*FAST, "--fraction", "0.5", "--out-dir", str(finished_run.parent),
                "--skip-complete"]  # fmt: skip
        assert run_cli.main(argv) == 0
        assert any("is in use by another process" in m for m in messages), messages
        assert not (finished_run / "summary.json").exists()
    assert run_cli.main(argv) == 0  # the lock is gone: now it is resumed
    assert (finished_run / "summary.json").is_file()


def test_a_killed_process_leaves_no_lock_and_its_temp_files_are_removed(tmp_path):
    code = (
        "import os, sys, time; sys.path.insert(0, sys.argv[2]);"
        "from deep_core.locks import FolderLock, temp_prefix;"
        "FolderLock(sys.argv[1]).acquire();"
        "open(os.path.join(sys.argv[1], temp_prefix('x') + 'tmp'), 'w').close();"
        "print('locked', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(REPO)],
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(DeepCoreError, match=f"in use by another process .*pid {p.pid}"):
            FolderLock(tmp_path).acquire()
        assert remove_stale_temp(tmp_path) == 0  # its writer is alive
    finally:
        p.kill()
        p.wait()
    with FolderLock(tmp_path):  # kill -9 dropped the lock
        pass
    mine = tmp_path / (temp_prefix("y") + "tmp")
    mine.touch()
    assert remove_stale_temp(tmp_path) == 1
    assert [q.name for q in tmp_path.iterdir() if q.name != ".lock"] == [mine.name]


def test_a_failure_before_the_first_checkpoint_leaves_nothing(tmp_path, monkeypatch):
    from deep_core.engine import Trainer

    def crash(self, *a, **k):
        raise RuntimeError("worker died")

    monkeypatch.setattr(Trainer, "fit", crash)
    out = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="worker died"):
        run_cli.main([*FAST, "--fraction", "0.5", "--out-dir", str(out)])
    assert not out.exists()


def test_a_folder_left_before_its_first_checkpoint_is_replaced_by_a_plain_rerun(finished_run):
    (finished_run / "checkpoint.pt").unlink()
    argv = [*FAST, "--fraction", "0.5", "--out-dir", str(finished_run.parent)]
    assert run_cli.main(argv) == 0
    assert (finished_run / "summary.json").is_file()
    assert run_cli.main(argv) == 2  # complete: never replaced


def test_report_leaves_dry_runs_out(tmp_path):
    from deep_core.report import build_report

    for name, dry, acc in (("full", False, 44.25), ("dry", True, None)):
        run = tmp_path / name
        run.mkdir()
        cfg = {"selection": "Uniform", "fraction": 0.5, "seed": 0, "dry_run": dry}
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        summary = {**cfg, "last_acc": acc, "best_acc": acc, "subset_noise_rate": 0.1}
        if dry:
            summary["dry_run"] = True
        (run / "summary.json").write_text(json.dumps(summary))
    report = build_report(tmp_path, group_by=["selection", "fraction"], metric="last")
    assert report.n_complete == 1 and report.n_incomplete == 0
    (group,) = report.groups
    assert [r.path.name for r in group.runs] == ["full"]


def test_a_run_folder_without_selection_json_selects_again_on_resume(finished_run):
    (finished_run / "selection.json").unlink()
    assert run_cli.main(["--resume", str(finished_run)]) == 0
    assert (finished_run / "selection.json").is_file()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: _method("Uniform", balance="maybe"), "balance must be True/False, got 'maybe'"),
        (lambda: _method("Prune4Rel", eta=float("inf")), "eta must be in (0, inf), got inf"),
        (lambda: _method("Uncertainty", uncertainty="Bogus"), "uncertainty must be one of"),
        (lambda: _signals(probs=np.full((4, 2), 0.7)), "summing to 1"),
        (lambda: _signals(clean_labels=np.array([0.0, 1.0, 1.0, 0.0])), "must be integers"),
        (lambda: _signals(clean_labels=np.array([0, 1, 2, 0])), "must lie in [0, 2)"),
    ],
    ids=["balance", "eta", "uncertainty", "probs", "clean-float", "clean-range"],
)
def test_python_api_rejects_bad_values(call, message):
    with pytest.raises(DeepCoreError) as e:
        call()
    assert message in str(e.value)


def _method(name: str, **options):
    from deep_core.methods import build_method

    return build_method(name, options)


def _signals(**arrays):
    from deep_core.signals import Signals

    return Signals({"labels": np.array([0, 1, 1, 0]), "probs": np.full((4, 2), 0.5), **arrays})
