"""``deepcore-run`` / ``python main_label_noise.py``: one command for a whole run.

Flags follow the Prune4ReL reference (``--dataset --data_path --selection
--robust-learner -se --fraction --balance --tau --eta ...``; booleans take True/False)
so existing sweeps run unchanged; ``--config FILE.yaml`` supplies any of them (flags
override the file). Every flag is used: a learner flag the chosen learner does not
take is an error, a selection flag the chosen method does not take is reported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import RunConfig, read_yaml
from ..errors import DeepCoreError
from ..runner import SHARED_METHOD_OPTIONS
from .common import ArgParser, run_cli, str_to_bool
from .method_args import (
    add_method_arguments,
    method_option_specs,
    method_options_from_args,
    method_options_from_mapping,
)

S = argparse.SUPPRESS

#: learner options: flag(s), dest (= the learner's keyword), type, help
LEARNER_FLAGS: list[tuple[tuple[str, ...], str, Any, str]] = [
    (("--lr-u",), "lr_u", float, "SOP: learning rate of u (default 10)"),
    (("--lr-v",), "lr_v", float, "SOP: learning rate of v (default 100)"),
    (
        ("-rc", "--ratio-consistency"),
        "ratio_consistency",
        float,
        "SOP+: weak/strong consistency weight (default 0; SOP+ uses 0.9)",
    ),
    (
        ("-rb", "--ratio-balance"),
        "ratio_balance",
        float,
        "SOP+: class-balance weight (default 0; SOP+ uses 0.1)",
    ),
    (("--lambda-u",), "lambda_u", float, "DivideMix: unlabeled loss weight (default 25)"),
    (
        ("--p-threshold",),
        "p_threshold",
        float,
        "DivideMix: clean probability threshold (default 0.5)",
    ),
    (("--T",), "T", float, "DivideMix: sharpening temperature (default 0.5)"),
    (("--alpha",), "alpha", float, "DivideMix: Beta(alpha, alpha) of mixup (default 4)"),
    (
        ("--warmup-epochs",),
        "warmup_epochs",
        int,
        "DivideMix: CE warm-up epochs (default 10; 30 with 100+ classes)",
    ),
    (
        ("--reference-rampup",),
        "reference_rampup",
        str_to_bool,
        "DivideMix: disable the lambda-u ramp-up as the Prune4ReL code does (default False)",
    ),
    (
        ("--confidence-penalty",),
        "confidence_penalty",
        str_to_bool,
        "DivideMix: confidence penalty in the warm-up (default: only for asym noise)",
    ),
]
LEARNER_DESTS = {dest for _, dest, _, _ in LEARNER_FLAGS}


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(
        prog="deepcore-run",
        description="Select a subset of a noisy training set and train a robust learner on it.",
        argument_default=S,
    )
    g = p.add_argument_group("run")
    g.add_argument("--config", metavar="FILE.yaml", help="settings file; flags override it")
    g.add_argument(
        "--out-dir", dest="out_dir", help="parent of the run directories (default runs/)"
    )
    g.add_argument(
        "--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint"
    )
    g.add_argument(
        "--skip-complete",
        dest="skip_complete",
        type=str_to_bool,
        nargs="?",
        const=True,
        help="for sweeps: skip runs whose summary.json exists, resume interrupted ones",
    )
    g.add_argument(
        "--dry-run",
        dest="dry_run",
        type=str_to_bool,
        nargs="?",
        const=True,
        help="stop after selection (warm-up, subset, summary without accuracies)",
    )
    g.add_argument("--device", help="cpu, cuda, cuda:N or auto (default auto)")
    g.add_argument(
        "--gpu", type=int, nargs="+", help="GPU id (reference flag; one id, or use torchrun)"
    )
    g.add_argument("--seed", type=int, help="random seed (default 0); experiment k uses seed+k")
    g.add_argument("--num_exp", type=int, help="number of experiments with consecutive seeds")
    g.add_argument("-j", "--workers", type=int, help="DataLoader workers for image files")
    g.add_argument(
        "--save-log",
        dest="save_log",
        type=str_to_bool,
        help="also write the reference's one-row text log under OUT/logs/",
    )
    g.add_argument(
        "--signals-cache",
        dest="signals_cache",
        help="warm-up signal cache (default OUT/signals-cache)",
    )
    g.add_argument("--deterministic", type=str_to_bool, nargs="?", const=True)
    g.add_argument(
        "--amp",
        type=amp_mode,
        help="mixed precision: True (default: bf16 or fp16 on CUDA, off on CPU), False, "
        "bf16 (also on CPU) or fp16 (CUDA)",
    )
    g.add_argument("--channels-last", dest="channels_last", type=str_to_bool)
    g.add_argument("--progress", type=str_to_bool, help="progress bars (default True)")

    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset", help="Digits (default, embedded), CIFAR10, CIFAR100, ImageFolder, ..."
    )
    g.add_argument("--data_path", "--data-path", dest="data_path", help="data root folder")
    g.add_argument(
        "--noise-type",
        dest="noise_type",
        help="clean sym sym-all asym idn; CIFAR-10N real1 real2 real3 realA realW; CIFAR-100N real",
    )
    g.add_argument(
        "--noise-rate",
        dest="noise_rate",
        type=float,
        help="synthetic noise rate in [0, 1) (default 0.4 on the embedded Digits, else 0)",
    )
    g.add_argument(
        "--n-train", dest="n_train", type=int, help="use only the first N training samples"
    )
    g.add_argument(
        "--n-class", dest="n_class", type=int, help="expected number of classes (checked)"
    )
    g.add_argument("--download", type=str_to_bool, help="let torchvision download CIFAR")
    g.add_argument("--image-size", dest="image_size", type=int, help="image side for ImageFolder")

    g = p.add_argument_group("model and optimisation")
    g.add_argument(
        "--model", help="SmallCNN, PreActResNet18/34, ResNet18/34/50 (default per data set)"
    )
    g.add_argument("--pre-trained", dest="pre_trained", type=str_to_bool)
    g.add_argument(
        "--model-path", dest="model_path", help="local state dict to initialise the model"
    )
    g.add_argument("--epochs", type=int, help="robust training epochs (default 200)")
    g.add_argument("-b", "--batch-size", dest="batch_size", type=int)
    g.add_argument("--test-batch-size", dest="test_batch_size", type=int)
    g.add_argument("--optimizer", help="SGD (default), Adam, AdamW")
    g.add_argument("--lr", type=float)
    g.add_argument("--min_lr", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("-wd", "--weight_decay", dest="weight_decay", type=float)
    g.add_argument("--nesterov", type=str_to_bool)
    g.add_argument("--scheduler", help="CosineAnnealingLR (default), StepLR, MultiStepLR, none")
    g.add_argument("--milestone", type=int, nargs="+", help="MultiStepLR epochs (default: half)")
    g.add_argument("--gamma", type=float)
    g.add_argument("--step_size", type=int)

    g = p.add_argument_group("selection")
    g.add_argument("--selection", help="selection method (deepcore-select --list shows them)")
    g.add_argument("--fraction", type=float, help="fraction of the training set to keep, in (0, 1]")
    g.add_argument(
        "-se",
        "--selection_epochs",
        dest="selection_epochs",
        type=int,
        help="warm-up epochs that record the selection signals (default 10)",
    )
    # --device and --workers are run-level flags; methods that take them get the run's values.
    add_method_arguments(p, exclude=SHARED_METHOD_OPTIONS)

    g = p.add_argument_group("robust learner")
    g.add_argument("--robust-learner", dest="robust_learner", help="CE, SOP, DivideMix")
    for flags, dest, typ, help_ in LEARNER_FLAGS:
        g.add_argument(*flags, dest=dest, type=typ, help=help_)
    return p


def amp_mode(value: str) -> bool | str:
    """``--amp``: True/False (as the reference passes them), ``bf16`` or ``fp16``."""
    if value.strip().lower() in ("bf16", "fp16"):
        return value.strip().lower()
    return str_to_bool(value)


def config_from_args(ns: argparse.Namespace) -> RunConfig:
    """Defaults ← ``--config`` file ← flags, as a typed :class:`RunConfig`."""
    given = vars(ns).copy()
    file_values = read_yaml(given.pop("config")) if "config" in given else {}
    given.pop("resume", None)
    fields = set(RunConfig.field_names())
    method_opts = method_options_from_mapping(file_values.get("method_options", {}) or {})
    method_opts.update(method_options_from_mapping(file_values))
    method_opts.update(method_options_from_args(ns, exclude=SHARED_METHOD_OPTIONS))
    for k in SHARED_METHOD_OPTIONS:
        method_opts.pop(k, None)
    learner_opts = dict(file_values.get("learner_options", {}) or {})
    learner_opts.update({k: v for k, v in file_values.items() if k in LEARNER_DESTS})
    learner_opts.update({k: given[k] for k in LEARNER_DESTS if k in given})
    specs = method_option_specs()
    settings: dict[str, Any] = {}
    for source in (file_values, given):
        for k, v in source.items():
            if k in fields and k not in ("method_options", "learner_options"):
                settings[k] = v
            elif (
                k not in specs
                and k not in LEARNER_DESTS
                and k not in ("method_options", "learner_options", "gpu")
            ):
                raise DeepCoreError(f"unknown setting {k!r} in the config file")
    if "gpu" in given or "gpu" in file_values:
        gpus = given.get("gpu", file_values.get("gpu"))
        gpus = [gpus] if isinstance(gpus, int) else list(gpus)
        if len(gpus) != 1:
            raise DeepCoreError("--gpu takes one id here; for several GPUs launch with torchrun")
        settings["device"] = f"cuda:{gpus[0]}"
    return RunConfig(**settings, method_options=method_opts, learner_options=learner_opts)


def _main(argv: Sequence[str] | None) -> int:
    from .. import distributed

    try:
        code = _run(argv)
    except BaseException:
        distributed.finish(wait=False)
        raise
    distributed.finish()
    return code


def _run(argv: Sequence[str] | None) -> int:
    from ..runner import configure_logging, resume_experiment, run_experiment

    parser = build_parser()
    ns = parser.parse_args(argv)
    configure_logging()
    if "resume" in ns:
        overrides = {k: v for k, v in vars(ns).items() if k != "resume"}
        resume_experiment(ns.resume, overrides=overrides)
        return 0
    skip_complete = bool(vars(ns).pop("skip_complete", False))
    cfg = config_from_args(ns)
    for exp in range(cfg.num_exp):
        if skip_complete and _skip_or_resume(cfg, exp):
            continue
        run_experiment(cfg, exp=exp)
    return 0


def _skip_or_resume(cfg: RunConfig, exp: int) -> bool:
    """``--skip-complete``: True if experiment ``exp`` is already done or was resumed here."""
    from ..runner import log, resume_experiment, run_name

    path = Path(cfg.out_dir) / run_name(cfg, cfg.seed + exp)
    if (path / "summary.json").is_file():
        log.info("skipping %s: complete (summary.json exists)", path)
        return True
    if path.is_dir():
        log.info("resuming interrupted run %s", path)
        keep = {k: getattr(cfg, k) for k in ("device", "workers", "progress")}
        resume_experiment(path, overrides=keep)
        return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
