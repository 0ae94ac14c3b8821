"""``deepcore-prune``: prune an image corpus or an embeddings file by embedding geometry.

Examples::

    deepcore-prune --corpus-path images/ --selection KMeansQuantile --quantile 0.9 \\
        --data-path target/ --model-name resnet18 --model-path resnet18.pth --out-dir out/
    deepcore-prune --features emb.npy --keys keys.txt --selection SemDeDup --eps 0.05 \\
        --num-clusters 1000 --out-dir out/
    deepcore-prune --features emb.npy --selection DBP --fraction 0.5 --dedup-eps 0.01 \\
        --out-dir out/

Outputs in ``--out-dir``: ``kept_keys.txt`` (sorted), ``scores.csv`` (key, group, score,
kept), ``summary.json``, ``<hard|easy|kept> samples/<class>/...`` copies for image
folders (unless ``--keys-only``) and ``histograms/*.png`` with ``--draw-histogram``.
Bad input prints one ``error:`` line and exits with status 2, leaving no partial output.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .common import ArgParser, run_cli

#: method options that have flags of their own here (the budget group)
BUDGET_OPTIONS = ("quantile",)


def corpus_flag_specs() -> dict:
    """Flags of every option the corpus methods declare (:mod:`deep_core.options`)."""
    from ..corpus.run import corpus_methods
    from ..methods import get_method
    from .method_args import flag_specs

    specs = flag_specs((name, get_method(name)) for name in corpus_methods())
    return {k: v for k, v in specs.items() if k not in BUDGET_OPTIONS}


def build_parser() -> argparse.ArgumentParser:
    from ..corpus.run import corpus_methods

    methods = corpus_methods()
    p = ArgParser(
        prog="deepcore-prune",
        description="Prune an image corpus or an embeddings file by embedding geometry.",
        epilog="methods: " + "; ".join(f"{name}: {summary}" for name, summary in methods.items()),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--corpus-path",
        type=Path,
        help="image folder (<class>/<image>), or WebDataset tar shards: a .tar, a folder of "
        ".tar or a quoted glob (image: first jpg/jpeg/png/webp member; label: .cls)",
    )
    src.add_argument(
        "--features",
        help="N x d embeddings: a .npy (memory-mapped), or a folder or glob of .npy shards "
        "or of Parquet/Arrow tables (read in batches)",
    )
    p.add_argument(
        "--keys", type=Path, help="with .npy features: one key per line (default 0..N-1)"
    )
    p.add_argument(
        "--embedding-column", default="embedding", help="tables: list-of-floats column"
    )
    p.add_argument("--key-column", default="key", help="tables: unique key column")
    p.add_argument(
        "--labels", type=Path, help="with --features: class per row (.npy ints or text names)"
    )
    p.add_argument(
        "--data-path", type=Path, help="target (reference) set: image folder or .npy embeddings"
    )
    p.add_argument("--target-labels", type=Path, help="classes of a .npy target (as --labels)")
    p.add_argument("--selection", required=True, help=f"one of: {', '.join(methods)}")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--fraction",
        type=float,
        help="keep exactly round(F * N) samples (ClusterSubsample: ceil(F * n) per cluster)",
    )
    budget.add_argument(
        "--quantile",
        type=float,
        help="KMeansQuantile, SSP: keep scores above the per-group quantile (default 0.9 "
        "for KMeansQuantile)",
    )
    from .method_args import add_flag_arguments

    m = p.add_argument_group("method options (only the given ones are passed)")
    add_flag_arguments(m, corpus_flag_specs().values())
    e = p.add_argument_group("embedding")
    e.add_argument(
        "--model-name",
        default="pixels",
        help="pixels (flattened normalised images), a torchvision architecture, timm:NAME "
        "(any timm model, pooled features) or open_clip:ARCH (an OpenCLIP image tower)",
    )
    e.add_argument(
        "--model-path", type=Path, help="local weights (state dict or checkpoint file)"
    )
    e.add_argument(
        "--download-weights",
        action="store_true",
        help="timm / OpenCLIP: let the library download the weights (open_clip:ARCH:TAG)",
    )
    e.add_argument(
        "--image-size", type=int, help="resize to S x S (default 32 pixels, else the model's)"
    )
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default="cpu")
    e.add_argument("--threads", type=int, default=4, help="image decoding threads")
    o = p.add_argument_group("output")
    o.add_argument("--out-dir", type=Path, required=True)
    o.add_argument(
        "--output-format",
        choices=("text", "parquet"),
        default="text",
        help="kept keys and scores as kept_keys.txt + scores.csv, or as .parquet files",
    )
    out = o.add_mutually_exclusive_group()
    out.add_argument(
        "--copy",
        action="store_true",
        default=None,
        help="copy kept images (the default for an image folder; not for tar shards)",
    )
    out.add_argument("--keys-only", action="store_true", help="write keys and scores only")
    o.add_argument(
        "--draw-histogram",
        action="store_true",
        help="score histograms (PNG): all samples, plus the 50 largest groups (clusters "
        "or classes) one file each",
    )
    o.add_argument("--seed", type=int, default=0)
    o.add_argument(
        "--kmeans-max-memory-gb",
        type=float,
        default=2.0,
        help="cap on the k-means training sample in GiB (float32 rows + 12 bytes each; "
        "default 2): K x 256 rows when they fit, else a smaller seeded sample (logged)",
    )
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    r = p.add_argument_group("engine")
    r.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: k-means, assignment and SemDeDup's per-cluster "
        "work as Ray tasks (pip install ray); same kept set",
    )
    r.add_argument("--address", help="with --engine ray: cluster address (auto = running)")
    r.add_argument("--ray-cpus", type=int, help="with --engine ray: CPUs of a local Ray")
    return p


def _main(argv: Sequence[str] | None) -> int:
    from ..corpus.run import PruneConfig, run_prune

    args = build_parser().parse_args(argv)
    options = {name: getattr(args, name) for name in corpus_flag_specs() if hasattr(args, name)}
    copy = False if args.keys_only else args.copy
    cfg = PruneConfig(
        selection=args.selection,
        out_dir=args.out_dir,
        corpus_path=args.corpus_path,
        features=args.features,
        embedding_column=args.embedding_column,
        key_column=args.key_column,
        output_format=args.output_format,
        keys=args.keys,
        labels=args.labels,
        data_path=args.data_path,
        target_labels=args.target_labels,
        fraction=args.fraction,
        quantile=args.quantile,
        method_options=options,
        model_name=args.model_name,
        model_path=args.model_path,
        download_weights=args.download_weights,
        image_size=args.image_size,
        batch_size=args.batch_size,
        device=args.device,
        threads=args.threads,
        seed=args.seed,
        kmeans_max_memory_gb=args.kmeans_max_memory_gb,
        copy=copy,
        draw_histogram=args.draw_histogram,
        engine=args.engine,
        address=args.address,
        ray_cpus=args.ray_cpus,
        progress=not args.quiet,
    )
    run_prune(cfg)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``deepcore-prune``)."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
