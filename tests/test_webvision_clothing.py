"""WebVision and Clothing-1M on small fake trees in the official layouts.

Each tree has a few tiny JPEGs per class; runs use 32-pixel crops, a small network,
one epoch and two DataLoader workers (the decode-in-workers path of the real sets).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deep_core.cli.run import main as run_main
from deep_core.datasets import DataConfig, load_dataset
from deep_core.datasets.clothing1m import CLASSES, Clothing1MDataset, balanced_draw
from deep_core.datasets.list_files import PackedPaths
from deep_core.errors import DeepCoreError, one_line

WV_CLASSES = 50
CM_CLASSES = 14


def _jpeg(path, seed: int, side: int = 36) -> None:
    from torchvision.io import encode_jpeg

    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, side, side + 4), dtype=torch.uint8, generator=g)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_jpeg(img, quality=80).numpy().tobytes())


def make_webvision(root, per_class: int = 2):
    """Official WebVision layout: 50 mini classes plus lines of class 50+ (filtered out)."""
    train, val = [], []
    for c in range(WV_CLASSES):
        for k in range(per_class):
            rel = f"google/q{c + 1:04d}/{k:06d}.jpg"
            _jpeg(root / rel, 1000 * c + k)
            train.append(f"{rel} {c}")
        name = f"val{c:06d}.jpg"
        _jpeg(root / "val_images_256" / name, 99_000 + c)
        val.append(f"{name} {c}")
    # Classes >= 50 are not part of the mini set: listed, never read (their files are absent).
    train += ["google/q0051/000000.jpg 50", "google/q0999/000001.jpg 998"]
    val += ["val999999.jpg 51"]
    (root / "info").mkdir(parents=True, exist_ok=True)
    (root / "info" / "train_filelist_google.txt").write_text("\n".join(train) + "\n")
    (root / "info" / "val_filelist.txt").write_text("\n".join(val) + "\n")
    return root


def make_clothing(root, per_class: int = 4, *, layout: str = "official"):
    """Clothing-1M in the official layout, DivideMix's copy (``images/`` stripped) or the
    reference's two-column lists."""
    rng = np.random.default_rng(0)
    keys, noisy, clean_kv = [], {}, {}
    val_keys, test_keys = [], []
    n = 0
    for c in range(CM_CLASSES):
        for k in range(per_class):
            key = f"images/{n % 10}/{n % 7:02d}/{n:05d},{k}.jpg"
            keys.append(key)
            noisy[key] = c if rng.random() < 0.7 else int(rng.integers(CM_CLASSES))
            if k == 0:
                clean_kv[key] = c  # training images with a clean label too (overlap)
            n += 1
        for split in (val_keys, test_keys):
            key = f"images/{n % 10}/{n % 7:02d}/{n:05d}.jpg"
            split.append(key)
            clean_kv[key] = c
            n += 1
    folder = root if layout != "dividemix" else root
    for i, key in enumerate(keys + val_keys + test_keys):
        rel = key if layout != "dividemix" else key[len("images/") :]
        _jpeg(folder / rel, i)
    root.mkdir(parents=True, exist_ok=True)
    if layout == "reference":
        (root / "noisy_train.txt").write_text("".join(f"{k} {noisy[k]}\n" for k in keys))
        (root / "clean_val.txt").write_text("".join(f"{k} {clean_kv[k]}\n" for k in val_keys))
        (root / "clean_test.txt").write_text("".join(f"{k} {clean_kv[k]}\n" for k in test_keys))
        return root
    extra_noisy = {
        "images/9/99/not_in_train.jpg": 3
    }  # noisy_label_kv lists more than the train list
    (root / "noisy_label_kv.txt").write_text(
        "".join(f"{k} {v}\n" for k, v in {**noisy, **extra_noisy}.items())
    )
    (root / "clean_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in clean_kv.items()))
    (root / "noisy_train_key_list.txt").write_text("".join(k + "\n" for k in keys))
    (root / "clean_val_key_list.txt").write_text("".join(k + "\n" for k in val_keys))
    (root / "clean_test_key_list.txt").write_text("".join(k + "\n" for k in test_keys))
    return root


@pytest.fixture(scope="module")
def webvision(tmp_path_factory):
    return make_webvision(tmp_path_factory.mktemp("webvision"))


@pytest.fixture(scope="module")
def clothing(tmp_path_factory):
    return make_clothing(tmp_path_factory.mktemp("clothing1m"))


def _load(name: str, root, **kw):
    return load_dataset(DataConfig(dataset=name, data_path=str(root), noise_type="real",
                                   image_size=32, **kw))  # fmt: skip


RUN_FLAGS = ["--image-size", "32", "--model", "SmallCNN", "--epochs", "1", "--batch-size", "16",
             "--test-batch-size", "32", "--workers", "2", "--progress", "False",
             "--noise-type", "real", "--fraction", "0.5"]  # fmt: skip


def _run(capsys, out, *args):
    code = run_main([*RUN_FLAGS, "--out-dir", str(out), *args])
    err = capsys.readouterr().err
    return code, err


def _one_line_error(err: str) -> str:
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err
    assert err.rstrip().endswith(errors[0]), err  # nothing (no traceback) after it
    return errors[0]


def _run_dirs(out):
    return (
        [p for p in out.iterdir() if p.is_dir() and p.name != "signals-cache"]
        if out.exists()
        else []
    )


# ----------------------------------------------------------------------------------
# WebVision
# ----------------------------------------------------------------------------------
def test_webvision_mini_layout(webvision):
    ds = _load("WebVision", webvision)
    assert ds.num_classes == WV_CLASSES and len(ds.train) == 2 * WV_CLASSES
    assert ds.clean_labels is None and ds.realised_noise_rate() is None
    assert np.array_equal(np.bincount(ds.labels), np.full(WV_CLASSES, 2))
    assert np.array_equal(ds.ids, np.arange(2 * WV_CLASSES))  # line numbers of the list file
    assert len(ds.test) == WV_CLASSES and ds.val is None
    assert ds.train.paths[3].endswith("google/q0002/000001.jpg")
    batch = next(ds.train.batches(np.arange(5), batch_size=5, views=("weak", "clean")))
    assert batch.views[0].shape == (5, 3, 32, 32) and batch.views[0].dtype == torch.float32
    spread = _load("WebVision", webvision, n_train=50)
    assert len(np.unique(spread.labels)) == 50  # --n-train spreads over the class-sorted list


def test_views_are_uint8_in_workers_and_normalised_per_batch(webvision):
    from torchvision.transforms.v2 import functional as F

    from deep_core.datasets.base import decode_image_file
    from deep_core.datasets.image_folder import IMAGENET_MEAN, IMAGENET_STD

    ds = _load("WebVision", webvision)
    views = ("clean", "weak", "strong")
    for workers in (0, 2):
        batch = next(ds.train.batches(np.arange(4), batch_size=4, views=views, workers=workers))
        assert all(v.shape == (4, 3, 32, 32) and v.dtype == torch.float32 for v in batch.views)
    img = decode_image_file(ds.train.paths[0])
    assert ds.train.transforms["weak"](img).dtype == torch.uint8
    crop = F.center_crop(F.resize(img, [37], antialias=True), [32, 32]).float() / 255
    mean, std = (
        torch.tensor(IMAGENET_MEAN)[:, None, None],
        torch.tensor(IMAGENET_STD)[:, None, None],
    )
    torch.testing.assert_close(batch.views[0][0], (crop - mean) / std)
    again = next(ds.train.batches(np.arange(4), batch_size=4, views=views, workers=2))
    for a, b in zip(batch.views, again.views, strict=True):  # seeded by (seed, epoch)
        torch.testing.assert_close(a, b)


def test_webvision_imagenet_val(tmp_path):
    root = make_webvision(tmp_path / "wv", per_class=1)
    for c in range(WV_CLASSES):
        _jpeg(root / "imagenet" / "val" / str(c) / f"ILSVRC2012_val_{c:08d}.JPEG", c)
    ds = _load("WebVision", root)
    images, labels = ds.extra_tests["imagenet"]
    assert len(images) == WV_CLASSES and np.array_equal(labels, np.arange(WV_CLASSES))


def test_webvision_rejects_synthetic_noise(webvision):
    with pytest.raises(DeepCoreError, match="already noisy"):
        load_dataset(DataConfig(dataset="WebVision", data_path=str(webvision), noise_type="sym",
                                noise_rate=0.2))  # fmt: skip


def test_webvision_one_epoch(webvision, tmp_path, capsys):
    out = tmp_path / "runs"
    code, err = _run(capsys, out, "--dataset", "WebVision", "--data_path", str(webvision),
                     "--selection", "SmallLoss", "-se", "1")  # fmt: skip
    assert code == 0, err
    (run,) = _run_dirs(out)
    import json

    summary = json.loads((run / "summary.json").read_text())
    assert summary["subset_size"] == WV_CLASSES and summary["subset_noise_rate"] is None
    assert summary["best_by"] == "test" and 0.0 <= summary["last_acc"] <= 100.0


# ----------------------------------------------------------------------------------
# Clothing-1M
# ----------------------------------------------------------------------------------
def test_clothing_official_layout(clothing):
    ds = _load("Clothing1M", clothing)
    assert isinstance(ds, Clothing1MDataset)
    assert ds.classes == CLASSES and len(ds.train) == 4 * CM_CLASSES
    assert len(ds.val) == CM_CLASSES and len(ds.test) == CM_CLASSES
    assert np.array_equal(ds.test_labels, np.arange(CM_CLASSES))
    assert ds.clean_labels is None
    assert ds.noise["overlap_with_clean"] == CM_CLASSES
    assert 0.0 <= ds.noise["overlap_noise_rate"] <= 1.0


@pytest.mark.parametrize("layout", ["dividemix", "reference"])
def test_clothing_other_layouts(tmp_path, clothing, layout):
    root = make_clothing(tmp_path / layout, layout=layout)
    ds, official = _load("Clothing1M", root), _load("Clothing1M", clothing)
    assert np.array_equal(ds.labels, official.labels)
    assert np.array_equal(ds.test_labels, official.test_labels)
    next(ds.test.batches(np.arange(3), batch_size=3))  # the images resolve


def test_clothing_reference_lists_without_test(tmp_path):
    root = make_clothing(tmp_path / "ref", layout="reference")
    (root / "clean_test.txt").unlink()
    ds = _load("Clothing1M", root)
    assert ds.val is None and len(ds.test) == CM_CLASSES  # clean_val is the test, as the reference


def test_clothing_one_epoch_best_on_val(clothing, tmp_path, capsys):
    out = tmp_path / "runs"
    code, err = _run(capsys, out, "--dataset", "Clothing1M", "--data_path", str(clothing),
                     "--selection", "Uniform")  # fmt: skip
    assert code == 0, err
    (run,) = _run_dirs(out)
    import json

    summary = json.loads((run / "summary.json").read_text())
    metrics = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert summary["best_by"] == "val" and "val_acc" in metrics[0]
    assert summary["last_acc"] == metrics[-1]["test_acc"]


def test_balanced_epoch_draw():
    rng = np.random.default_rng(0)
    labels = rng.choice(CM_CLASSES, size=5000, p=np.r_[0.5, np.full(13, 0.5 / 13)])
    subset = np.sort(rng.choice(5000, size=3000, replace=False))
    draw = balanced_draw(labels, subset, num_samples=700, num_classes=CM_CLASSES,
                         rng=np.random.default_rng(1))  # fmt: skip
    assert draw.size == 700 and np.isin(draw, subset).all() and np.all(np.diff(draw) > 0)
    assert np.bincount(labels[draw], minlength=CM_CLASSES).max() <= 50  # ceil(700 / 14)
    small = balanced_draw(labels, subset[:100], num_samples=32_000, num_classes=CM_CLASSES,
                          rng=np.random.default_rng(1))  # fmt: skip
    assert np.array_equal(small, subset[:100])  # a small subset is returned whole
    again = balanced_draw(labels, subset, num_samples=700, num_classes=CM_CLASSES,
                          rng=np.random.default_rng(1))  # fmt: skip
    assert np.array_equal(draw, again)


def test_epoch_indices_depend_on_epoch(clothing):
    ds = _load("Clothing1M", clothing)
    idx = np.arange(len(ds.train))
    a = ds.epoch_indices(idx, num_samples=28, epoch=0, seed=0)
    b = ds.epoch_indices(idx, num_samples=28, epoch=1, seed=0)
    assert a.size == 28 and not np.array_equal(a, b)
    assert np.array_equal(a, ds.epoch_indices(idx, num_samples=28, epoch=0, seed=0))


def test_training_epochs_use_the_balanced_draw(clothing):
    """DivideMix-style epochs: batches_per_epoch x batch_size drawn per epoch from the subset."""
    import dataclasses

    from deep_core.engine import OptimConfig, TrainConfig, TrainContext

    ds = dataclasses.replace(_load("Clothing1M", clothing), batches_per_epoch=3)
    subset = np.arange(0, len(ds.train), 2, dtype=np.int64)
    cfg = TrainConfig(epochs=2, batch_size=4, progress=False)
    ctx = TrainContext(ds, subset, cfg, OptimConfig(), model="SmallCNN")
    seen = [np.sort(np.concatenate([b.positions.numpy() for b in ctx.train_batches(e)]))
            for e in (0, 1)]  # fmt: skip
    for e, pos in enumerate(seen):
        assert pos.size == 12 and np.isin(pos, subset).all()
        assert np.array_equal(pos, ctx.epoch_pool(e))  # one draw per epoch for every caller
        assert np.bincount(ds.labels[pos], minlength=CM_CLASSES).max() <= 1  # ceil(12 / 14)
    assert not np.array_equal(seen[0], seen[1])
    # a recording warm-up needs every sample's per-epoch signals: no draw there
    rec = TrainContext(ds, subset, cfg, OptimConfig(), model="SmallCNN",
                       recorder=lambda *a: None)  # fmt: skip
    assert np.array_equal(rec.epoch_pool(0), subset)


# ----------------------------------------------------------------------------------
# Bad trees: one line, exit status 2, no run directory left behind
# ----------------------------------------------------------------------------------
def _break(root, dataset: str, how: str):
    if how == "missing list":
        victim = ("info/val_filelist.txt" if dataset == "WebVision"
                  else "clean_test_key_list.txt")  # fmt: skip
        (root / victim).unlink()
        return "not found"
    if dataset == "WebVision":
        images = sorted((root / "google").rglob("*.jpg"))
    else:
        images = sorted((root / "images").rglob("*.jpg"))
    if how == "missing image":
        images[5].unlink()
        return "image not found"
    images[5].write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return "corrupt or unreadable image"


@pytest.mark.parametrize("how", ["missing list", "missing image", "corrupt image"])
@pytest.mark.parametrize("dataset", ["WebVision", "Clothing1M"])
def test_bad_tree(tmp_path, capsys, dataset, how):
    make = make_webvision if dataset == "WebVision" else make_clothing
    root = make(tmp_path / "data", per_class=1 if dataset == "WebVision" else 2)
    expected = _break(root, dataset, how)
    out = tmp_path / "runs"
    # SmallLoss decodes every training image (warm-up epoch and clean pass).
    code, err = _run(capsys, out, "--dataset", dataset, "--data_path", str(root),
                     "--selection", "SmallLoss", "-se", "1")  # fmt: skip
    assert code == 2
    line = _one_line_error(err)
    assert expected in line, line
    assert _run_dirs(out) == []


# ----------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------
def test_packed_paths_round_trip():
    paths = ["a/b.jpg", "ü/ñ.jpg", "", "x" * 300]
    packed = PackedPaths(paths)
    assert list(packed) == paths and packed[-1] == paths[-1] and packed[1:3] == paths[1:3]
    assert list(packed.take(np.array([3, 0]))) == [paths[3], paths[0]]
    with pytest.raises(IndexError):
        packed[4]


def test_one_line_of_a_worker_error():
    wrapped = ("Caught DeepCoreError in DataLoader worker process 0.\nOriginal Traceback (most "
               "recent call last):\n  File \"x.py\", line 1\ndeep_core.errors.DeepCoreError: "
               "corrupt or unreadable image /a.jpg: bad\n")  # fmt: skip
    assert one_line(wrapped) == "corrupt or unreadable image /a.jpg: bad"
    assert one_line("plain message") == "plain message"
