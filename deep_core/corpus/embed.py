"""Embeddings of an image folder or from a file, validated and cached.

Image folders are ``ROOT/<class>/.../<image>`` (files directly under ``ROOT`` belong to
the class ``""``); a sample's key is its path relative to ``ROOT`` (POSIX separators),
and samples are in sorted key order. WebDataset tar shards are the other image input
(:mod:`deep_core.corpus.wds`).

Embeddings:

- ``pixels``: the image resized to ``image_size`` x ``image_size``, normalised with the
  ImageNet channel mean and std, flattened (3 * size^2 dims);
- a torchvision classification architecture (``resnet18``, ``vit_b_16``, ...): its
  penultimate features, i.e. the input of its last linear layer, which is replaced by
  the identity. The weights come from ``model_path``, a local state dict (the last
  layer's weights are not needed and any class count is accepted); nothing is
  downloaded.

Embedding writes straight into a ``.npy`` memory map in the cache folder (named by a
hash of the model, its weights file, the image size and every key's size and
modification time), renamed into place when complete, so memory stays
O(batch) and an interrupted run leaves no half-written cache.
"""

from __future__ import annotations

import array
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import DeepCoreError, unknown_name
from ..locks import remove_stale_temp, temp_prefix
from .keys import decode_line
from .wds import TarShards

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CHUNK_ROWS = 1 << 16


@dataclass(frozen=True)
class ImageFolder:
    """The images under ``root``, sorted by key.

    Attributes
    ----------
    root : Path
    keys : tuple of str
        Relative POSIX paths.
    classes : tuple of str
        Sorted class names (first path component; ``""`` for top-level files).
    labels : ndarray of int64, shape (N,)
        Index of each image's class in ``classes``.
    """

    root: Path
    keys: tuple[str, ...]
    classes: tuple[str, ...]
    labels: np.ndarray

    def path(self, i: int) -> Path:
        return self.root / self.keys[i]

    def fingerprint(self) -> Iterator[str]:
        """Every image's key, size and modification time (the embedding cache key)."""
        for key in self.keys:
            st = (self.root / key).stat()
            yield f"|{key}|{st.st_size}|{st.st_mtime_ns}"

    def images(self) -> Iterator[tuple[Path, str]]:
        """Each image's path and key, in key order."""
        for i, key in enumerate(self.keys):
            yield self.path(i), key


def scan_folder(root: str | Path, *, what: str = "corpus") -> ImageFolder:
    """List the images under ``root`` (recursively); an empty folder is an error."""
    root = Path(root)
    if not root.is_dir():
        raise DeepCoreError(f"{what} folder not found: {root}")
    keys = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                keys.append((Path(dirpath) / name).relative_to(root).as_posix())
    if not keys:
        raise DeepCoreError(
            f"{what} folder {root} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    keys.sort()
    cls = [k.split("/", 1)[0] if "/" in k else "" for k in keys]
    classes = tuple(sorted(set(cls)))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c] for c in cls], dtype=np.int64)
    return ImageFolder(root=root, keys=tuple(keys), classes=classes, labels=labels)


def load_image(
    path: Path | BinaryIO,
    size: int,
    key: str,
    mean: np.ndarray = IMAGENET_MEAN,
    std: np.ndarray = IMAGENET_STD,
) -> np.ndarray:
    """RGB image resized to ``size`` x ``size``, normalised (ImageNet's by default), (3, S, S)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit: scale, do not saturate
                scaled = np.clip(np.rint(np.asarray(img) / 257.0), 0, 255)
                img = Image.fromarray(scaled.astype(np.uint8))
            rgb = img.convert("RGB").resize((size, size), Image.BILINEAR)
    except Exception as e:  # PIL raises many types for bad files
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DeepCoreError(f"cannot read image {key}: {msg}") from None
    a = np.asarray(rgb, dtype=np.float32) / 255.0
    a = (a - mean) / std
    return np.ascontiguousarray(a.transpose(2, 0, 1))


# -- models ---------------------------------------------------------------------------
#: library prefixes of ``--model-name`` (``timm:NAME``, ``open_clip:ARCH``)
LIBRARIES = {"timm": "timm", "open_clip": "open_clip_torch"}


@dataclass(frozen=True)
class Embedder:
    """A feature model and the input it expects.

    Attributes
    ----------
    model : torch.nn.Module
        Maps a (B, 3, S, S) batch to (B, d) features; eval mode.
    mean, std : ndarray of float32, shape (3,)
        Per-channel normalisation of [0, 1] pixels.
    image_size : int
        Its native square input size (the default of ``--image-size``).
    """

    model: Any
    mean: np.ndarray
    std: np.ndarray
    image_size: int


def model_names() -> list[str]:
    """Torchvision classification architectures, plus ``pixels``."""
    import torchvision

    return ["pixels", *torchvision.models.list_models(module=torchvision.models)]


def _library(model_name: str) -> tuple[str, str] | None:
    prefix, sep, name = model_name.partition(":")
    if not sep or prefix not in LIBRARIES:
        return None
    if not name:
        raise DeepCoreError(f"--model-name {model_name!r} names no model after {prefix}:")
    return prefix, name


def _import_library(prefix: str) -> Any:
    import importlib

    try:
        return importlib.import_module(prefix)
    except ImportError:
        raise DeepCoreError(
            f"--model-name {prefix}:... needs {LIBRARIES[prefix]}: pip install {LIBRARIES[prefix]}"
        ) from None


def check_model_name(model_name: str) -> None:
    """Error unless ``model_name`` is pixels, a torchvision architecture or a library model."""
    lib = _library(model_name)
    if lib is None:
        if model_name != "pixels" and model_name not in model_names():
            raise DeepCoreError(
                f"unknown model {model_name!r}; use pixels, a torchvision architecture, "
                "timm:NAME or open_clip:ARCH"
            )
        return
    prefix, name = lib
    module = _import_library(prefix)
    if prefix == "timm":
        known = module.is_model(name)
    else:
        known = name.partition(":")[0] in module.list_models()
    if not known:
        raise DeepCoreError(f"unknown {prefix} model {name!r}")


def build_embedder(
    model_name: str, model_path: str | Path | None, *, download: bool = False
) -> Embedder:
    """The feature model of ``--model-name`` with its normalisation and input size.

    - a torchvision architecture: penultimate features, ImageNet normalisation, 224;
    - ``timm:NAME``: ``timm.create_model(NAME, num_classes=0)`` (pooled features), the
      model's own normalisation and input size (its pretrained config);
    - ``open_clip:ARCH``: the image tower of an OpenCLIP model (its embedding), CLIP's
      normalisation and input size.

    Weights come from ``model_path`` (a local file, loaded by the library's own loader:
    timm's ``pretrained_cfg_overlay`` file, OpenCLIP's checkpoint path), or with
    ``download=True`` from the library's own download (timm: the hub weights of NAME;
    OpenCLIP: ``open_clip:ARCH:TAG``, e.g. ``open_clip:ViT-B-32:laion2b_s34b_b79k``).
    Nothing is downloaded otherwise.
    """
    lib = _library(model_name)
    if lib is None:
        model = build_feature_model(model_name, model_path)
        return Embedder(model, IMAGENET_MEAN, IMAGENET_STD, 224)
    prefix, name = lib
    module = _import_library(prefix)
    path = _weights(model_name, model_path, download)
    try:
        if prefix == "timm":
            return _timm_embedder(module, name, path)
        return _open_clip_embedder(module, name, path)
    except DeepCoreError:
        raise
    except Exception as e:  # the libraries raise many types for bad weights
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DeepCoreError(f"cannot build {model_name}: {msg}") from None


def _weights(model_name: str, model_path: str | Path | None, download: bool) -> Path | None:
    if model_path is not None:
        if download:
            raise DeepCoreError("give --model-path or --download-weights, not both")
        path = Path(model_path)
        if not path.is_file():
            raise DeepCoreError(f"model weights not found: {path}")
        return path
    if not download:
        raise DeepCoreError(
            f"--model-path (local weights) is required for {model_name}; "
            "or --download-weights to fetch them with the library"
        )
    return None


def _timm_embedder(timm: Any, name: str, path: Path | None) -> Embedder:
    from timm.data import resolve_model_data_config

    if path is None:
        model = timm.create_model(name, pretrained=True, num_classes=0)
    else:
        model = timm.create_model(
            name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)}
        )
    cfg = resolve_model_data_config(model)
    return Embedder(
        model.eval(),
        np.asarray(cfg["mean"], dtype=np.float32),
        np.asarray(cfg["std"], dtype=np.float32),
        int(cfg["input_size"][-1]),
    )


def _open_clip_embedder(open_clip: Any, name: str, path: Path | None) -> Embedder:
    arch, _, tag = name.partition(":")
    if path is None and not tag:
        raise DeepCoreError(
            f"open_clip:{arch} downloads need a pretrained tag: open_clip:{arch}:TAG "
            "(open_clip.list_pretrained() lists them)"
        )
    model = open_clip.create_model(arch, pretrained=str(path) if path is not None else tag)
    visual = model.visual
    size = visual.image_size
    mean = getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    return Embedder(
        visual.eval(),
        np.asarray(mean, dtype=np.float32),
        np.asarray(std, dtype=np.float32),
        int(size[-1] if isinstance(size, (tuple, list)) else size),
    )


def _set_module(model, name: str, module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def build_feature_model(model_name: str, model_path: str | Path | None):
    """A torchvision model whose output is its penultimate features (eval mode, CPU)."""
    import torch
    import torchvision
    from torch import nn

    names = torchvision.models.list_models(module=torchvision.models)
    if model_name not in names:
        raise unknown_name("model", model_name, ["pixels", *names])
    if model_path is None:
        raise DeepCoreError(
            f"--model-path (a local state dict) is required for {model_name}; "
            "weights are never downloaded"
        )
    path = Path(model_path)
    if not path.is_file():
        raise DeepCoreError(f"model weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DeepCoreError(f"cannot read model weights {path}: {str(e).splitlines()[0]}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise DeepCoreError(f"{path} does not hold a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = torchvision.models.get_model(model_name, weights=None)
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DeepCoreError(f"{model_name} has no final linear layer to take features from")
    head = linears[-1]
    state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    _set_module(model, head, nn.Identity())
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[:3]
        raise DeepCoreError(
            f"{path} does not fit {model_name} (missing or unexpected keys, e.g. {bad})"
        )
    return model.eval()


def _file_hash(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def embedding_key(
    folder: ImageFolder | TarShards,
    model_name: str,
    model_path: str | Path | None,
    image_size: int | None,
) -> str:
    """Cache name of a corpus's embeddings: model, weights, size, and every file's stat."""
    h = hashlib.sha1(f"v1|{model_name}|{image_size}".encode())
    if model_path is not None and Path(model_path).is_file():
        h.update(_file_hash(Path(model_path)).encode())
    for part in folder.fingerprint():
        h.update(part.encode())
    return h.hexdigest()[:20]


def embed_folder(
    folder: ImageFolder | TarShards,
    out_path: Path,
    *,
    model_name: str = "pixels",
    model_path: str | Path | None = None,
    image_size: int | None = 32,
    download: bool = False,
    batch_size: int = 64,
    device: str = "cpu",
    threads: int = 4,
    progress: bool = True,
) -> np.ndarray:
    """Embed every image of ``folder`` (or of tar shards) into the ``.npy`` file ``out_path``.

    The file is complete when this returns (written under a temporary name and renamed).

    Parameters
    ----------
    folder : ImageFolder or TarShards
        Images are read in key order, one batch at a time (tar shards streamed).
    out_path : Path
        Destination ``.npy`` (float32, N x d).
    model_name : str, default="pixels"
        ``pixels``, a torchvision classification architecture, ``timm:NAME`` or
        ``open_clip:ARCH`` (see :func:`build_embedder`).
    model_path : path, optional
        Local weights (required for models unless ``download``).
    image_size : int, optional
        Square size images are resized to; None: the model's native size.
    download : bool, default=False
        Let timm / OpenCLIP download the weights.
    batch_size : int, default=64
    device : str, default="cpu"
        Torch device for the model.
    threads : int, default=4
        Threads decoding images.
    progress : bool, default=True
        tqdm bar on stderr.

    Returns
    -------
    ndarray of float32, memory-mapped from ``out_path``.
    """
    from tqdm import tqdm

    model = None
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if model_name != "pixels":
        import torch

        embedder = build_embedder(model_name, model_path, download=download)
        model = embedder.model.to(device)
        mean, std = embedder.mean, embedder.std
        image_size = image_size or embedder.image_size
    size = int(image_size or 32)
    n = len(folder.labels)
    tmp = out_path.with_name(temp_prefix(out_path.name) + "tmp")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(out_path.parent)  # embeddings of killed runs
    feats = None
    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            bar = tqdm(total=n, unit="img", desc="embed", disable=not progress, leave=False)
            sources = folder.images()
            for lo in range(0, n, batch_size):
                hi = min(n, lo + batch_size)
                imgs = list(
                    pool.map(
                        lambda src: load_image(src[0], size, src[1], mean, std),
                        islice(sources, hi - lo),
                    )
                )
                batch = np.stack(imgs)
                if model is None:
                    emb = batch.reshape(batch.shape[0], -1)
                else:
                    with torch.no_grad():
                        t = torch.from_numpy(batch).to(device)
                        emb = model(t).flatten(1).float().cpu().numpy()
                if feats is None:
                    feats = np.lib.format.open_memmap(
                        tmp, mode="w+", dtype=np.float32, shape=(n, emb.shape[1])
                    )
                feats[lo:hi] = emb
                bar.update(hi - lo)
            bar.close()
        check_finite(feats, f"{model_name} embeddings")  # never cache NaN
        feats.flush()
        del feats
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return np.load(out_path, mmap_mode="r")


# -- files ----------------------------------------------------------------------------
def load_features(path: str | Path, *, what: str = "features") -> np.ndarray:
    """An N x d float ``.npy``, memory-mapped; shape, dtype and finiteness are checked."""
    x = _map_npy(Path(path), what)
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise DeepCoreError(f"{what} must be an N x d array, got shape {getattr(x, 'shape', '?')}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DeepCoreError(f"{what} is empty (shape {x.shape})")
    if not np.issubdtype(x.dtype, np.floating):
        raise DeepCoreError(f"{what} must be floating point, got dtype {x.dtype}")
    check_finite(x, what)
    return x


def check_finite(x: np.ndarray, what: str) -> None:
    """Error naming the first row with a NaN or infinite value."""
    for lo in range(0, x.shape[0], CHUNK_ROWS):
        ok = np.isfinite(x[lo : lo + CHUNK_ROWS]).all(axis=1)
        if not ok.all():
            row = lo + int(np.flatnonzero(~ok)[0])
            raise DeepCoreError(f"{what} contain NaN or infinite values (first at row {row})")


def load_labels(
    path: str | Path, n: int, *, what: str = "labels"
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class of every row: an ``.npy`` of ints or a text file of class names (one a line).

    Returns ids into the class names sorted naturally (numbers by value, then text), and
    the names. Memory is O(N) integers plus the distinct names: the ``.npy`` is memory
    mapped and the text file streamed line by line, so no string per row is held.
    """
    path = Path(path)
    if path.suffix == ".npy":
        raw = _map_npy(path, what)
        if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
            raise DeepCoreError(f"{what} must be a 1-D integer array, got {raw.dtype} {raw.shape}")
        _check_count(path, len(raw), n, what)
        values = np.unique(raw)  # numeric order = natural order
        ids = np.searchsorted(values, raw).astype(np.int64, copy=False)
        return ids, tuple(str(int(v)) for v in values)
    if not path.is_file():
        raise DeepCoreError(f"{what} file not found: {path}")
    seen: dict[str, int] = {}  # name -> id in order of first appearance
    codes = array.array("q")
    try:
        with path.open("rb") as f:
            for line in f:  # split on "\n" only, as the whole-file reader did
                name = decode_line(line, path, what=what)
                codes.append(seen.setdefault(name, len(seen)))
    except OSError as e:
        raise DeepCoreError(f"cannot read {what} file {path}: {e}") from None
    _check_count(path, len(codes), n, what)
    classes = tuple(sorted(seen, key=_natural))
    order = np.empty(len(seen), dtype=np.int64)
    order[[seen[c] for c in classes]] = np.arange(len(classes))
    return order[np.frombuffer(codes, dtype=np.int64)], classes


def _map_npy(path: Path, what: str) -> np.ndarray:
    """``path`` memory-mapped (no pickles); a missing or unreadable file is one line."""
    if not path.is_file():
        raise DeepCoreError(f"{what} file not found: {path}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DeepCoreError(f"cannot read {what} file {path}: {str(e).splitlines()[0]}") from None


def _check_count(path: Path, count: int, n: int, what: str) -> None:
    if count != n:
        raise DeepCoreError(f"{what} file {path} has {count:,} entries but {n:,} are needed")


def _natural(name: str) -> tuple:
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)
