"""timm and OpenCLIP embedders from local weights of randomly initialised tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from deep_core.cli.prune import main
from deep_core.corpus.embed import load_image


def _run(*args: object) -> int:
    return main([str(a) for a in args] + ["--quiet"])


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "corpus"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    return root


def _embeddings(out):
    (emb,) = (out / "cache").glob("embeddings-*.npy")
    return np.load(emb)


def test_timm_model_from_a_local_file(images, tmp_path) -> None:
    timm = pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=7)
    torch.save(model.state_dict(), tmp_path / "vit.pth")
    out = tmp_path / "out"
    rc = _run("--corpus-path", images, "--selection", "SSP", "--num-clusters", 2,
              "--fraction", 0.5, "--model-name", "timm:test_vit",
              "--model-path", tmp_path / "vit.pth", "--out-dir", out, "--keys-only")  # fmt: skip
    assert rc == 0
    x = _embeddings(out)
    assert x.shape == (12, model.num_features)
    # The pooled features of the same weights, on the model's own size and normalisation.
    model.reset_classifier(0)
    model.eval()
    cfg = timm.data.resolve_model_data_config(model)
    img = load_image(images / "a/0.png", cfg["input_size"][-1], "a/0.png",
                     np.float32(cfg["mean"]), np.float32(cfg["std"]))  # fmt: skip
    with torch.no_grad():
        want = model(torch.from_numpy(img)[None]).numpy()[0]
    np.testing.assert_allclose(x[0], want, rtol=1e-4, atol=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["embedding"] == "timm:test_vit"


def test_open_clip_image_tower_from_a_local_file(images, tmp_path) -> None:
    open_clip = pytest.importorskip("open_clip")
    torch = pytest.importorskip("torch")
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                       "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                     "layers": 1},
    }  # fmt: skip
    (tmp_path / "TinyTest-ViT.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "TinyTest-ViT.json")
    torch.manual_seed(0)
    model = open_clip.create_model("TinyTest-ViT")
    torch.save(model.state_dict(), tmp_path / "clip.pt")
    out = tmp_path / "out"
    rc = _run("--corpus-path", images, "--selection", "SSP", "--num-clusters", 2,
              "--fraction", 0.5, "--model-name", "open_clip:TinyTest-ViT",
              "--model-path", tmp_path / "clip.pt", "--out-dir", out, "--keys-only")  # fmt: skip
    assert rc == 0
    x = _embeddings(out)
    assert x.shape == (12, 16)
    img = load_image(images / "a/0.png", 32, "a/0.png",
                     np.float32(open_clip.OPENAI_DATASET_MEAN),
                     np.float32(open_clip.OPENAI_DATASET_STD))  # fmt: skip
    model.eval()
    with torch.no_grad():
        want = model.encode_image(torch.from_numpy(img)[None]).numpy()[0]
    np.testing.assert_allclose(x[0], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name, extra, message",
    [
        ("timm:no_such_net", [], "unknown timm model"),
        ("timm:test_vit", [], "--model-path (local weights) is required"),
        ("open_clip:NoSuchArch", [], "unknown open_clip model"),
        ("nosuchlib:x", [], "unknown model"),
    ],
)
def test_bad_models_are_one_line_errors(images, tmp_path, capsys, name, extra, message) -> None:
    pytest.importorskip("timm")
    if name.startswith("open_clip"):
        pytest.importorskip("open_clip")
    out = tmp_path / "out"
    rc = _run("--corpus-path", images, "--selection", "SSP", "--fraction", 0.5,
              "--model-name", name, *extra, "--out-dir", out)  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and message in err[-1] and not out.exists()
