"""The ``deepcore-prune`` pipeline: inputs -> embeddings -> clustering -> method -> outputs.

Everything a user can get wrong (paths, shapes, NaN, keys, method name and options,
fraction) is checked before the output folder is touched; a later failure (a corrupt
image found while embedding) removes whatever this run staged.

Caches live in ``OUT/cache``: embeddings of image folders (``embeddings-<hash>.npy``)
and k-means results (``clustering-<hash>.npz``, keyed by the data, the k-means
options and the seed), so re-running with another fraction or method costs neither.

Engines: ``engine="local"`` runs everything in this process (SemDeDup's per-cluster
work in the method's ``workers`` processes); ``engine="ray"`` runs the k-means training,
the assignment, SemDeDup's per-cluster maxima and the other methods' per-cluster step
as Ray tasks
(:mod:`deep_core.corpus.ray_engine`) on a local Ray or a cluster (``address``). Both
give the same kept set.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..checks import MAX_IMAGE_SIZE
from ..errors import DeepCoreError
from ..io import write_json
from ..methods import build_method, list_methods
from ..methods._common import check_seed
from ..methods._corpus import CorpusMethod, CorpusResult, Precomputed, Target
from ..methods.base import get_method, option_names
from ..neighbors.kmeans import MAX_MEMORY_GB, Clustering, training_rows
from ..signals import Signals
from .embed import (
    ImageFolder,
    check_finite,
    check_model_name,
    embed_folder,
    embedding_key,
    load_features,
    load_labels,
    scan_folder,
)
from .keys import KeyList, KeySource, RowNumbers, scan_key_file
from .outputs import OUTPUT_FORMATS, OutputDir, copy_kept, draw_histograms, write_key_outputs
from .shards import ShardSet, gather, resolve_shards
from .wds import TarShards, is_tar_corpus, scan_tars

if TYPE_CHECKING:
    from .ray_engine import RayEngine


@dataclass
class PruneConfig:
    """Typed options of one ``deepcore-prune`` run (see the CLI's ``--help``)."""

    selection: str
    out_dir: Path
    corpus_path: Path | None = None
    features: str | Path | None = None
    keys: Path | None = None
    labels: Path | None = None
    data_path: Path | None = None
    target_labels: Path | None = None
    fraction: float | None = None
    quantile: float | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    embedding_column: str = "embedding"
    key_column: str = "key"
    output_format: str = "text"
    model_name: str = "pixels"
    model_path: Path | None = None
    download_weights: bool = False
    image_size: int | None = None
    batch_size: int = 64
    device: str = "cpu"
    threads: int = 4
    seed: int = 0
    kmeans_max_memory_gb: float = MAX_MEMORY_GB
    copy: bool | None = None
    draw_histogram: bool = False
    engine: str = "local"
    address: str | None = None
    ray_cpus: int | None = None
    progress: bool = True


#: ``engine`` choices
ENGINES = ("local", "ray")


@dataclass
class _Corpus:
    keys: KeySource  # read one part at a time when the outputs are written
    features: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    fingerprint: str
    folder: ImageFolder | TarShards | None = None


def corpus_methods() -> dict[str, str]:
    """Registered corpus methods and their summaries."""
    return {
        name: s for name, s in list_methods().items() if issubclass(get_method(name), CorpusMethod)
    }


def _stat_fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _hash(*parts: object) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:20]


def _build(cfg: PruneConfig, log: Callable[[str], None]) -> CorpusMethod:
    """The method from ``--selection`` and its options; unused options are named."""
    cls = get_method(cfg.selection)  # an unknown name lists the registered ones
    if not issubclass(cls, CorpusMethod):
        raise DeepCoreError(
            f"{cfg.selection} is not a corpus method; choose from: "
            f"{', '.join(sorted(corpus_methods()))}"
        )
    options = dict(cfg.method_options)
    if cfg.quantile is not None:
        if "quantile" not in option_names(cls):
            raise DeepCoreError(f"{cfg.selection} does not take --quantile; use --fraction")
        options["quantile"] = cfg.quantile
    method, unused = build_method(cfg.selection, options, strict=False)
    for name in sorted(unused):
        log(f"note: --{name.replace('_', '-')} is not used by {cfg.selection}")
    assert isinstance(method, CorpusMethod)
    return method


def _validate(cfg: PruneConfig, method: CorpusMethod) -> None:
    if (cfg.corpus_path is None) == (cfg.features is None):
        raise DeepCoreError("give exactly one of --corpus-path and --features")
    if cfg.fraction is not None and cfg.quantile is not None:
        raise DeepCoreError("give --fraction or --quantile, not both")
    method.check_rule(cfg.fraction)
    if cfg.corpus_path is not None and (cfg.keys is not None or cfg.labels is not None):
        raise DeepCoreError("--keys and --labels go with --features (folders have their own)")
    if cfg.output_format not in OUTPUT_FORMATS:
        raise DeepCoreError(
            f"unknown output format {cfg.output_format!r}; choose from: {', '.join(OUTPUT_FORMATS)}"
        )
    if cfg.copy and cfg.corpus_path is None:
        raise DeepCoreError("--copy needs --corpus-path (there are no files to copy)")
    if cfg.data_path is not None and not method.uses_target:
        raise DeepCoreError(f"--data-path (a target set) is not used by {cfg.selection}")
    if cfg.target_labels is not None and (cfg.data_path is None or cfg.data_path.is_dir()):
        raise DeepCoreError("--target-labels goes with a --data-path .npy file")
    if cfg.engine not in ENGINES:
        raise DeepCoreError(f"unknown engine {cfg.engine!r}; choose from: {', '.join(ENGINES)}")
    if cfg.engine == "local" and (cfg.address is not None or cfg.ray_cpus is not None):
        raise DeepCoreError("--address and --ray-cpus go with --engine ray")
    if cfg.ray_cpus is not None and cfg.ray_cpus < 1:
        raise DeepCoreError(f"--ray-cpus must be positive, got {cfg.ray_cpus}")
    check_model_name(cfg.model_name)
    if cfg.image_size is not None and not 1 <= cfg.image_size <= MAX_IMAGE_SIZE:
        raise DeepCoreError(f"--image-size must be in [1, {MAX_IMAGE_SIZE}], got {cfg.image_size}")
    if cfg.batch_size < 1:
        raise DeepCoreError(f"--batch-size must be positive, got {cfg.batch_size}")
    check_seed(cfg.seed)
    if not 0 < cfg.kmeans_max_memory_gb < float("inf"):
        raise DeepCoreError(
            f"--kmeans-max-memory-gb must be positive, got {cfg.kmeans_max_memory_gb}"
        )


def _image_size(cfg: PruneConfig) -> int | None:
    """``--image-size``, 32 for pixels, or None: the model's native size."""
    if cfg.image_size is not None:
        return cfg.image_size
    return 32 if cfg.model_name == "pixels" else None


def _embed(
    cfg: PruneConfig, folder: ImageFolder | TarShards, cache: Path, log: Callable[[str], None]
):
    size = _image_size(cfg)
    key = embedding_key(folder, cfg.model_name, cfg.model_path, size)
    path = cache / f"embeddings-{key}.npy"
    if path.is_file():
        log(f"embeddings of {folder.root} from cache ({path.name})")
        return np.load(path, mmap_mode="r"), key
    t = time.perf_counter()
    x = embed_folder(
        folder,
        path,
        model_name=cfg.model_name,
        model_path=cfg.model_path,
        image_size=size,
        download=cfg.download_weights,
        batch_size=cfg.batch_size,
        device=cfg.device,
        threads=cfg.threads,
        progress=cfg.progress,
    )
    log(
        f"embedded {len(folder.labels):,} images of {folder.root} with {cfg.model_name} "
        f"({x.shape[1]} dims, {time.perf_counter() - t:.1f} s)"
    )
    return x, key


def _load_corpus(
    cfg: PruneConfig,
    folder: ImageFolder | TarShards | None,
    cache: Path,
    log: Callable[[str], None],
    shards: ShardSet | None = None,
) -> _Corpus:
    if folder is not None:
        x, key = _embed(cfg, folder, cache, log)
        keys = KeyList(folder.keys) if isinstance(folder, ImageFolder) else folder.key_source()
        return _Corpus(keys, x, folder.labels, folder.classes, key, folder)
    assert cfg.features is not None
    if shards is None:
        x = load_features(cfg.features)
        fingerprint = _stat_fingerprint(Path(cfg.features))
        keys = _key_file(cfg.keys, x.shape[0])
    else:
        t = time.perf_counter()
        x, table_keys = gather(
            shards, cache, embedding_column=cfg.embedding_column, key_column=cfg.key_column
        )
        check_finite(x, "features")
        fingerprint = shards.fingerprint(cfg.embedding_column, cfg.key_column)
        keys = table_keys if table_keys is not None else _key_file(cfg.keys, x.shape[0])
        log(
            f"read {len(shards.paths)} shard(s): {x.shape[0]:,} x {x.shape[1]} "
            f"({time.perf_counter() - t:.1f} s)"
        )
    if cfg.labels is not None:
        labels, classes = load_labels(cfg.labels, x.shape[0])
    else:
        labels, classes = np.zeros(x.shape[0], dtype=np.int64), ("",)
    return _Corpus(keys, x, labels, classes, fingerprint)


def _key_file(path: Path | None, n: int) -> KeySource:
    """``--keys`` (checked in one streaming pass), or the row numbers."""
    return RowNumbers(n) if path is None else scan_key_file(path, n)


def _load_target(
    cfg: PruneConfig,
    corpus: _Corpus,
    target_folder: ImageFolder | None,
    cache: Path,
    log: Callable[[str], None],
    *,
    supervised: bool,
) -> tuple[Target | None, str]:
    if cfg.data_path is None:
        return None, corpus.fingerprint
    if target_folder is not None:
        x, fp = _embed(cfg, target_folder, cache, log)
        names, classes = target_folder.labels, target_folder.classes
    else:
        x = load_features(cfg.data_path, what="target features")
        fp = _stat_fingerprint(cfg.data_path)
        if cfg.target_labels is not None:
            names, classes = load_labels(cfg.target_labels, x.shape[0], what="target labels")
        else:
            names, classes = None, None
    if x.shape[1] != corpus.features.shape[1]:
        raise DeepCoreError(
            f"target embeddings have {x.shape[1]} dims but the corpus has "
            f"{corpus.features.shape[1]}"
        )
    labels = None
    if names is not None and classes is not None:
        # Same class names -> the corpus's ids; other names get ids past them.
        index = {c: i for i, c in enumerate(corpus.classes)}
        extra = [c for c in classes if c not in index]
        for c in extra:
            index[c] = len(index)
        remap = np.array([index[c] for c in classes], dtype=np.int64)
        labels = remap[names]
        if supervised:
            _same_classes(corpus.classes, classes)
    return Target(x, labels), fp


def _same_classes(corpus: tuple[str, ...], target: tuple[str, ...]) -> None:
    only_c, only_t = sorted(set(corpus) - set(target)), sorted(set(target) - set(corpus))
    if only_c or only_t:
        raise DeepCoreError(
            "supervised KMeansQuantile needs the same classes in corpus and target; "
            f"only in the corpus: {only_c}, only in the target: {only_t}"
        )


def _clustering(
    method: CorpusMethod,
    data: np.ndarray,
    data_fp: str,
    cache: Path,
    seed: int,
    log: Callable[[str], None],
    target: Target | None = None,
    engine: RayEngine | None = None,
    max_memory_gb: float = MAX_MEMORY_GB,
) -> Clustering:
    k = min(method.clusters_for(target), data.shape[0])
    n, d = data.shape
    rows = training_rows(n, d, k, max_memory_gb=max_memory_gb)
    key = _hash(
        "clustering-v2",
        data_fp,
        data.shape,
        method.spherical,
        method.clusters_for(target),
        method.niter,  # type: ignore[attr-defined]
        seed,
        rows,
    )
    path = cache / f"clustering-{key}.npz"
    if path.is_file():
        log(f"clustering from cache ({path.name})")
        return Clustering.load(path)
    uncapped = training_rows(n, d, k, max_memory_gb=None)
    if rows < uncapped:
        log(
            f"k-means: training sample capped at {rows:,} rows ({rows / k:.1f} per cluster; "
            f"{uncapped:,} uncapped) by --kmeans-max-memory-gb {max_memory_gb:g}"
        )
    t = time.perf_counter()
    if engine is None:
        clustering = method.cluster(data, seed=seed, target=target, max_memory_gb=max_memory_gb)
    else:
        clustering = engine.kmeans(
            data,
            k,
            spherical=method.spherical,
            niter=method.niter,  # type: ignore[attr-defined]
            seed=seed,
            max_memory_gb=max_memory_gb,
        )
    clustering.save(path)
    log(
        f"k-means: {clustering.num_clusters:,} clusters of {data.shape[0]:,} embeddings "
        f"({time.perf_counter() - t:.1f} s)"
    )
    empty = int((clustering.sizes() == 0).sum())
    if empty:  # a degenerate k-means: fewer distinct rows than clusters, or a bad sample
        log(f"note: {empty:,} of {clustering.num_clusters:,} k-means clusters are empty")
    return clustering


def _write_outputs(
    od: OutputDir,
    cfg: PruneConfig,
    method: CorpusMethod,
    corpus: _Corpus,
    result: CorpusResult,
    copy: bool,
    log: Callable[[str], None],
    engine: RayEngine | None = None,
) -> dict[str, Any]:
    subset = result.subset
    kept = subset.mask()
    if result.group_kind == "class":
        names = list(corpus.classes)
        names += [str(g) for g in range(len(names), int(result.groups.max()) + 1)]
    else:
        names = [str(g) for g in range(int(result.groups.max()) + 1)]
    t = time.perf_counter()
    write_key_outputs(
        od.stage_dir,
        corpus.keys,
        output_format=cfg.output_format,
        group_names=names,
        groups=result.groups,
        scores=subset.scores,
        kept=kept,
        engine=engine if corpus.keys.num_parts > 1 else None,  # one part: no task to spread
    )
    log(
        f"wrote the keys and scores of {corpus.keys.num_parts:,} part(s) "
        f"({time.perf_counter() - t:.1f} s)"
    )
    if copy and isinstance(corpus.folder, ImageFolder):
        copy_kept(
            od.path(f"{result.kind} samples"),
            corpus.folder.root,
            corpus.folder.keys,
            subset.indices,
            progress=cfg.progress,
        )
    if cfg.draw_histogram:
        count = draw_histograms(
            od.path("histograms"),
            subset.scores,
            result.groups,
            names,
            kept,
            title=cfg.selection,
        )
        log(f"drew {count} histograms")
    summary = {
        "selection": cfg.selection,
        "options": method.options(),
        "seed": cfg.seed,
        "engine": cfg.engine,
        "kmeans_max_memory_gb": cfg.kmeans_max_memory_gb,
        "fraction": cfg.fraction,
        "num_samples": int(kept.size),
        "num_kept": len(subset),
        "kind": result.kind,
        "groups": result.group_kind,
        "embedding": cfg.model_name if corpus.folder is not None else str(cfg.features),
        "info": subset.info,
    }
    write_json(od.path("summary.json"), summary)
    return summary


def run_prune(cfg: PruneConfig, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one ``deepcore-prune`` invocation; returns its summary.

    Raises :class:`~deep_core.errors.DeepCoreError` for bad input, before anything is
    written when the problem is visible up front.
    """
    if log is None:

        def log(msg: str) -> None:
            print(msg, file=sys.stderr)

    method = _build(cfg, log)
    _validate(cfg, method)
    folder: ImageFolder | TarShards | None = None
    if cfg.corpus_path is not None:
        if is_tar_corpus(cfg.corpus_path):
            if cfg.copy:
                raise DeepCoreError("--copy is not supported for tar shards; use --keys-only")
            folder = scan_tars(cfg.corpus_path)
        else:
            folder = scan_folder(cfg.corpus_path)
    target_folder = None
    if cfg.data_path is not None:
        if cfg.data_path.is_dir():
            target_folder = scan_folder(cfg.data_path, what="target")
        elif not cfg.data_path.is_file():
            raise DeepCoreError(f"target (--data-path) not found: {cfg.data_path}")
    supervised = bool(getattr(method, "supervised", False))
    if supervised and folder is not None and target_folder is not None:
        _same_classes(folder.classes, target_folder.classes)
    # Embedding files are checked (shape, dtype, NaN, keys) before OUT exists; shards are
    # resolved now and read into OUT's cache.
    shards = resolve_shards(cfg.features) if cfg.features is not None else None
    if shards is not None and shards.kind == "table" and cfg.keys is not None:
        raise DeepCoreError("--keys goes with .npy features; tables carry a key column")
    early = None
    if folder is None and shards is None:
        early = _load_corpus(cfg, None, cfg.out_dir, log)
    copy = cfg.copy if cfg.copy is not None else isinstance(folder, ImageFolder)

    if cfg.engine == "ray":
        from .ray_engine import RayEngine

        engine: Any = RayEngine(address=cfg.address, num_cpus=cfg.ray_cpus)
    else:
        engine = contextlib.nullcontext()
    with OutputDir(cfg.out_dir) as od, engine as ray:
        cache = od.cache_dir
        corpus = early or _load_corpus(cfg, folder, cache, log, shards)
        target, target_fp = _load_target(
            cfg,
            corpus,
            target_folder,
            cache,
            log,
            supervised=supervised,
        )
        signals = Signals(
            {"labels": corpus.labels, "features": corpus.features},
            num_classes=max(len(corpus.classes), int(corpus.labels.max()) + 1),
            check_finite=False,
        )
        data = method.clustering_data(signals, target)
        clustering = None
        if data is not None:
            fp = target_fp if (method.uses_target and target is not None) else corpus.fingerprint
            ref = target
            if method.uses_target and ref is None:  # the corpus is its own target
                ref = Target(corpus.features, corpus.labels)
            clustering = _clustering(
                method, data, fp, cache, cfg.seed, log, ref, ray, cfg.kmeans_max_memory_gb
            )
        similarities = ray.max_similarities if ray is not None else None
        t = time.perf_counter()
        result = method.prune(
            signals,
            cfg.fraction,
            seed=cfg.seed,
            target=target,
            precomputed=Precomputed(clustering=clustering, similarities=similarities, tasks=ray),
            progress=cfg.progress,
        )
        info = result.subset.info
        msg = f"{cfg.selection}: kept {len(result.subset):,} of {corpus.keys.num_rows:,}"
        if "eps" in info and cfg.selection == "SemDeDup":
            msg += f" (eps={info['eps']})"
        log(f"{msg} in {time.perf_counter() - t:.1f} s")
        summary = _write_outputs(od, cfg, method, corpus, result, copy, log, ray)
        od.commit()
    log(f"wrote {cfg.out_dir}")
    return summary
