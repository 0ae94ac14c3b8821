"""``deepcore-run`` / ``python main_label_noise.py``: one command for a whole run.

Flags follow the Prune4ReL reference (``--dataset --data_path --selection
--robust-learner -se --fraction --balance --tau --eta ...``; booleans take True/False)
so existing sweeps run unchanged; ``--config FILE.yaml`` supplies any of them (flags
override the file). Every flag of the reference's ``arguments.py`` is accepted: a learner
flag the chosen learner does not take is an error, a selection flag the chosen method
does not take and a reference flag that changes nothing here are reported
(``ignored_options``).

Defaults. ``--protocol reference`` given explicitly (flag or config file) fills every
setting the command line leaves out with the reference's default (its ``arguments.py``:
CIFAR10, DivideMix with ``--lambda-u 1``, ResNet18, ``--uncertainty Margin --tau 0.95
--eta 100``; see :data:`deep_core.config.REFERENCE_DEFAULTS`), so a reference line means
what it meant there. Without ``--protocol`` the signal pipeline is still the reference's
(the default protocol) but omitted settings take this package's defaults (the embedded
Digits, CE), so ``deepcore-run`` alone runs offline; ``--protocol clean`` uses the clean
pipeline with the same defaults.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checks import check_run_config
from ..config import (
    PROTOCOLS,
    REFERENCE_DEFAULTS,
    REFERENCE_LEARNER_DEFAULTS,
    REFERENCE_METHOD_DEFAULTS,
    SHARED_METHOD_OPTIONS,
    SIGNAL_VIEWS,
    WARMUP_SCHEDULES,
    RunConfig,
    read_yaml,
)
from ..errors import DeepCoreError
from ..locks import FolderLocked
from .common import ArgParser, run_cli, str_to_bool
from .method_args import (
    FlagSpec,
    add_flag_arguments,
    add_method_arguments,
    flag_specs,
    method_option_specs,
    method_options_from_args,
    method_options_from_mapping,
    options_from_mapping,
)

S = argparse.SUPPRESS

#: Flags of the reference's ``arguments.py`` that change nothing here (its ELR learners,
#: one-shot and submodular settings, print and test intervals, the ``-s*`` warm-up
#: optimiser flags its warm-up never reads): accepted and reported in ``ignored_options``.
#: A flag some selection method takes as an option is that option instead.
REFERENCE_ONLY_FLAGS: list[tuple[tuple[str, ...], Any, dict[str, Any]]] = [
    (("--n-query",), int, {}),
    (("--core-resolution",), int, {}),
    (("--core-model",), str, {}),
    (("--penultimate",), str_to_bool, {}),
    (("--num_eval",), int, {}),
    (("--print_freq", "-p"), int, {}),
    (("--cross",), str, {"nargs": "+"}),
    (("--n-redundant",), int, {}),
    (("--ood-rate",), float, {}),
    (("--lambda-elr",), int, {}),
    (("--beta",), float, {}),
    (("--mixup-alpha",), float, {}),
    (("--gamma-elr-plus",), float, {}),
    (("--train_batch", "-tb"), int, {}),
    (("--selection_batch", "-sb"), int, {}),
    (("--test_interval", "-ti"), int, {}),
    (("--test_fraction", "-tf"), float, {}),
    (("--meta-epochs", "-me"), int, {}),
    (("--selection_momentum", "-sm"), float, {}),
    (("--selection_weight_decay", "-swd"), float, {}),
    (("--selection_optimizer", "-so"), str, {}),
    (("--selection_nesterov", "-sn"), str_to_bool, {}),
    (("--selection_lr", "-slr"), float, {}),
    (("--meta-lr", "-mlr"), float, {}),
    (("--meta-steps",), int, {}),
    (("--selection_test_interval", "-sti"), int, {}),
    (("--selection_test_fraction", "-stf"), float, {}),
    (("--lamda",), float, {}),
    (("--lamda-scheduling",), str_to_bool, {}),
    (("--pairwise-mask",), str_to_bool, {}),
    (("--num-bins",), int, {}),
    (("--label-smoothing",), float, {}),
    (("--submodular",), str, {}),
    (("--submodular_greedy",), str, {}),
    (("--num-easy",), int, {}),
    (("--is-core",), str_to_bool, {}),
    (("--save_path", "-sp"), str, {}),
]
#: prefix of the argparse ``dest`` of a :data:`REFERENCE_ONLY_FLAGS` flag
REF = "reference:"


def learner_option_specs() -> dict[str, FlagSpec]:
    """Flags of every option of every registered robust learner, from their declarations."""
    from robust_learners.base import LEARNERS  # no torch: the learners import it lazily

    return flag_specs(LEARNERS.items(), strict=True)


def noise_type_arg(text: str) -> str:
    """A noise type; a trailing comma (the reference scripts' ``real1, real2``) is dropped."""
    return text.strip().rstrip(",").strip()


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
    g.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="reference (default): warm-up schedule sized on --epochs, each method's signals"
        " from the view its reference reads (Prune4Rel: one seeded strong view), and, when"
        " given explicitly, the reference's defaults for omitted settings; clean: schedule"
        " sized on -se, clean view for every method",
    )
    g.add_argument(
        "--warmup-schedule",
        dest="warmup_schedule",
        choices=WARMUP_SCHEDULES,
        help="size the warm-up's LR schedule on the main run (run) or on -se (warmup);"
        " default: the protocol's",
    )
    g.add_argument(
        "--signal-view",
        dest="signal_view",
        choices=SIGNAL_VIEWS,
        help="view of probs and features: auto (the protocol's), clean or strong",
    )
    g.add_argument("--device", help="cpu, cuda, cuda:N or auto (default auto)")
    g.add_argument(
        "--gpu",
        type=int,
        nargs="+",
        help="GPU id; several ids launch one DDP process per GPU (torch.distributed.run)",
    )
    g.add_argument(
        "--multi-gpu",
        dest="multi_gpu",
        type=str_to_bool,
        help="reference flag: with several --gpu ids, train on all of them (DDP)",
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
        type=noise_type_arg,
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
    g.add_argument(
        "--image-size",
        "--resolution",
        dest="image_size",
        type=int,
        help="input side for file-backed data sets (default 224; ImageFolder 32)",
    )

    g = p.add_argument_group("model and optimisation")
    g.add_argument(
        "--model", help="SmallCNN, PreActResNet18/34, ResNet18/34/50 (default per data set)"
    )
    g.add_argument(
        "--pre-trained",
        dest="pre_trained",
        type=str_to_bool,
        help="ImageNet weights from torchvision (downloads them: needs the network)",
    )
    g.add_argument(
        "--pre-warmuped",
        dest="pre_warmuped",
        type=str_to_bool,
        help="record the signals from --pre-warmed-filename instead of training a warm-up",
    )
    g.add_argument(
        "--pre-warmed-filename",
        dest="pre_warmed_filename",
        help="state dict of a trained warm-up network (with --pre-warmuped True)",
    )
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
    g.add_argument(
        "--budget",
        choices=("epochs", "steps", "samples"),
        help="what --budget-value counts: epochs (default: --epochs), optimisation steps or"
        " training samples; steps/samples train every subset for the same compute",
    )
    g.add_argument(
        "--budget-value",
        dest="budget_value",
        type=int,
        help="epochs, steps or samples of training (with --budget)",
    )

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

    specs = method_option_specs()
    if "metric" not in specs:  # Prune4Rel's similarity, once the method takes the option
        p.add_argument(
            "--metric", dest="metric", help="Prune4Rel: cossim or euclidean (reference flag)"
        )

    from robust_learners import learner_names

    g = p.add_argument_group(
        "robust learner", "Options of the --robust-learner; one it does not take is an error."
    )
    g.add_argument("--robust-learner", dest="robust_learner", help=", ".join(learner_names()))
    learner_specs = learner_option_specs()
    add_flag_arguments(g, learner_specs.values())

    g = p.add_argument_group(
        "reference flags that change nothing here (reported in ignored_options)"
    )
    for flags, typ, extra in REFERENCE_ONLY_FLAGS:
        name = flags[0].lstrip("-")
        if name.replace("-", "_") in specs or name.replace("-", "_") in learner_specs:
            continue
        g.add_argument(*flags, dest=REF + name, type=typ, help=S, **extra)
    return p


def amp_mode(value: str) -> bool | str:
    """``--amp``: True/False (as the reference passes them), ``bf16`` or ``fp16``."""
    if value.strip().lower() in ("bf16", "fp16"):
        return value.strip().lower()
    return str_to_bool(value)


def config_from_args(ns: argparse.Namespace) -> RunConfig:
    """Defaults ← ``--config`` file ← flags, as a typed :class:`RunConfig`.

    With ``--protocol reference`` given (flag or file), the defaults are the reference's.
    """
    given = vars(ns).copy()
    file_values = read_yaml(given.pop("config")) if "config" in given else {}
    given.pop("resume", None)
    for key in ("method_options", "learner_options"):
        if not isinstance(file_values.get(key) or {}, dict):
            raise DeepCoreError(f"{key} in the config file must be a mapping of option: value")
    reference_flags = dict(file_values.pop("reference_flags", None) or {})
    for k in [k for k in given if k.startswith(REF)]:
        reference_flags[k.removeprefix(REF)] = given.pop(k)
    warm = _warm_model(given, file_values, reference_flags)
    fields = set(RunConfig.field_names())
    method_opts = method_options_from_mapping(file_values.get("method_options", {}) or {})
    method_opts.update(method_options_from_mapping(file_values))
    method_opts.update(method_options_from_args(ns, exclude=SHARED_METHOD_OPTIONS))
    for source in (file_values, given):  # --metric before a method takes the option
        if "metric" in source and "metric" not in method_option_specs():
            method_opts["metric"] = source.pop("metric")
    for k in SHARED_METHOD_OPTIONS:
        method_opts.pop(k, None)
    learner_specs = learner_option_specs()
    learner_opts = dict(file_values.get("learner_options", {}) or {})
    learner_opts.update(options_from_mapping(learner_specs, file_values))
    learner_opts.update({k: given[k] for k in learner_specs if k in given})
    specs = method_option_specs()
    settings: dict[str, Any] = {}
    for source in (file_values, given):
        for k, v in source.items():
            if k in fields and k not in ("method_options", "learner_options"):
                settings[k] = v
            elif (
                k not in specs
                and k not in learner_specs
                and k not in ("method_options", "learner_options", "gpu", "multi_gpu")
            ):
                raise DeepCoreError(f"unknown setting {k!r} in the config file")
    gpus = gpu_ids(given, file_values)
    if gpus and "device" in settings:  # an explicit --device (e.g. cpu) wins over --gpu
        logging.getLogger("deep_core").warning(
            "warning: --gpu %s is ignored: --device %s is given",
            ",".join(map(str, gpus)),
            settings["device"],
        )
    elif gpus:
        # several ids: one process per GPU, launched by run() (torch.distributed.run)
        settings["device"] = f"cuda:{gpus[0]}" if len(gpus) == 1 else "cuda"
    if warm is not None:
        settings["warmup_model"] = warm
    if settings.get("protocol") == "reference":
        _reference_defaults(settings, method_opts, learner_opts)
    try:
        return RunConfig(
            **settings,
            method_options=method_opts,
            learner_options=learner_opts,
            reference_flags=reference_flags,
        )
    except TypeError as e:
        raise DeepCoreError(f"bad setting: {e}") from None


def gpu_ids(given: dict[str, Any], file_values: dict[str, Any]) -> list[int]:
    """The ``--gpu`` ids of the command line or the config file (empty if none)."""
    gpus = given.get("gpu", file_values.get("gpu"))
    if gpus is None:
        return []
    return [int(gpus)] if isinstance(gpus, int) else [int(g) for g in gpus]


def _warm_model(
    given: dict[str, Any], file_values: dict[str, Any], reference_flags: dict[str, Any]
) -> str | None:
    """``--pre-warmuped True --pre-warmed-filename FILE`` → FILE (popped from ``given``)."""
    use = given.pop("pre_warmuped", file_values.pop("pre_warmuped", False))
    name = given.pop("pre_warmed_filename", file_values.pop("pre_warmed_filename", None))
    if not use:
        if name is not None:
            reference_flags["pre-warmed-filename"] = name
        return None
    if name is None or name == "/":
        raise DeepCoreError(
            "--pre-warmuped True needs --pre-warmed-filename FILE (a warm-up network's"
            " state dict)"
        )
    return str(name)


def _reference_defaults(
    settings: dict[str, Any], method_opts: dict[str, Any], learner_opts: dict[str, Any]
) -> None:
    """Fill what the command line left out with the reference's defaults (in place)."""
    from robust_learners import learner_names

    from ..methods import get_method, list_methods
    from ..methods.base import option_names
    from ..options import option_specs

    for k, v in REFERENCE_DEFAULTS.items():
        settings.setdefault(k, v)
    # an unknown learner or method gets no defaults here; validation names the problem
    if settings["robust_learner"] in learner_names():
        from robust_learners import get_learner

        learner = get_learner(settings["robust_learner"])
        takes = set(option_specs(learner))
        for k, v in REFERENCE_LEARNER_DEFAULTS.items():
            if k in takes:
                learner_opts.setdefault(k, v)
    if settings["selection"] in list_methods():
        takes = set(option_names(get_method(settings["selection"])))
        for k, v in REFERENCE_METHOD_DEFAULTS.items():
            if k in takes:
                method_opts.setdefault(k, v)


def _main(argv: Sequence[str] | None) -> int:
    try:
        code = _run(argv)
    except BaseException:
        _finish_distributed(wait=False)
        raise
    _finish_distributed()
    return code


def _finish_distributed(*, wait: bool = True) -> None:
    # Only a run that imported the engine can have joined a process group; --help and
    # bad flags end before torch is imported.
    if "deep_core.distributed" in sys.modules:
        from .. import distributed

        distributed.finish(wait=wait)


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    from ..runner import configure_logging, resume_experiment, run_experiment  # torch: after --help

    configure_logging()
    if "resume" in ns:
        overrides = {k: v for k, v in vars(ns).items() if k != "resume"}
        resume_experiment(ns.resume, overrides=overrides)
        return 0
    skip_complete = bool(vars(ns).pop("skip_complete", False))
    cfg = config_from_args(ns)
    check_run_config(cfg)  # before the loop: --num_exp 0 would otherwise do nothing
    gpus = gpu_ids(vars(ns), {})
    if len(gpus) > 1 and "LOCAL_RANK" not in os.environ:
        return launch_ddp(list(sys.argv[1:] if argv is None else argv), gpus, cfg)
    for exp in range(cfg.num_exp):
        if skip_complete and _skip_or_resume(cfg, exp):
            continue
        run_experiment(cfg, exp=exp)
    return 0


def ddp_command(argv: Sequence[str], gpus: Sequence[int]) -> tuple[list[str], dict[str, str]]:
    """The command (and environment) that runs ``argv`` as one DDP process per GPU."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc_per_node", str(len(gpus)), "-m", "deep_core.cli.run", *argv]
    return cmd, {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus)}


def launch_ddp(argv: Sequence[str], gpus: Sequence[int], cfg: RunConfig) -> int:
    """``--gpu 0 1 2 3`` (``--multi-gpu True``): the same command under torch.distributed.run.

    The reference wraps the model in DataParallel; here each GPU runs one DDP process
    (the same as ``torchrun --nproc_per_node 4 main_label_noise.py ...``).
    """
    import torch

    from ..runner import log, validate

    if not torch.cuda.is_available():
        raise DeepCoreError(f"--gpu {' '.join(map(str, gpus))}: CUDA is not available")
    validate(cfg)  # bad input fails here, once, not in every process
    cmd, env = ddp_command(argv, gpus)
    log.info("launching %d DDP processes: %s", len(gpus), " ".join(cmd))
    return subprocess.run(cmd, env=env, check=False).returncode


def _skip_or_resume(cfg: RunConfig, exp: int) -> bool:
    """``--skip-complete``: True if experiment ``exp`` is already done or was resumed here."""
    from ..rundir import RunDir, run_name
    from ..runner import log, resume_experiment

    path = Path(cfg.out_dir) / run_name(cfg, cfg.seed + exp)
    if RunDir(path).summary.is_file():
        log.info("skipping %s: complete (summary.json exists)", path)
        return True
    if path.is_dir():
        log.info("resuming interrupted run %s", path)
        keep = {k: getattr(cfg, k) for k in ("device", "workers", "progress")}
        try:
            resume_experiment(path, overrides=keep)
        except FolderLocked as e:  # a parallel sweep trains it: leave it to that process
            log.info("skipping %s: %s", path, e)
        return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
