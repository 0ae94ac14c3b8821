"""Networks by name. Every network is a :class:`FeatureNet` (logits + penultimate features)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import DeepCoreError, unknown_name
from ..registry import Registry
from .base import FeatureNet
from .cifar_resnet import CifarResNet
from .inception_resnet import InceptionResNetV2
from .preact_resnet import he_preact_resnet18, he_preact_resnet34, preact_resnet18, preact_resnet34
from .resnet import TorchvisionResNet
from .small import SmallCNN

Builder = Callable[[int, tuple[int, int, int], bool], FeatureNet]

#: every network, by name; a builder takes (num_classes, image_shape, pretrained)
MODELS: Registry[Builder] = Registry(
    "model",
    {
        "SmallCNN": lambda c, shape, pre: SmallCNN(c, shape[0]),
        "ResNet8": lambda c, shape, pre: CifarResNet(8, c, shape[0]),
        "ResNet20": lambda c, shape, pre: CifarResNet(20, c, shape[0]),
        "ResNet32": lambda c, shape, pre: CifarResNet(32, c, shape[0]),
        "PreActResNet18": lambda c, shape, pre: preact_resnet18(c, shape[0]),
        "PreActResNet34": lambda c, shape, pre: preact_resnet34(c, shape[0]),
        "PreActResNet18He": lambda c, shape, pre: he_preact_resnet18(c, shape[0]),
        "PreActResNet34He": lambda c, shape, pre: he_preact_resnet34(c, shape[0]),
        "InceptionResNetV2": lambda c, shape, pre: InceptionResNetV2(c, shape[0], min(shape[1:])),
        "ResNet18": lambda c, shape, pre: TorchvisionResNet("resnet18", c, shape[0], shape[1], pre),
        "ResNet34": lambda c, shape, pre: TorchvisionResNet("resnet34", c, shape[0], shape[1], pre),
        "ResNet50": lambda c, shape, pre: TorchvisionResNet("resnet50", c, shape[0], shape[1], pre),
    },
)

#: the reference's spelling of a model name → ours (so its scripts' ``--model`` works)
ALIASES = {"Inception_ResNetv2": "InceptionResNetV2"}

#: models with torchvision ImageNet weights for ``--pre-trained``
PRETRAINED = ("ResNet18", "ResNet34", "ResNet50")


def check_pretrained(name: str, pretrained: bool, model_path: str | Path | None) -> None:
    """``--pre-trained`` without ``--model-path`` needs a model with published weights."""
    name = ALIASES.get(name, name)
    if pretrained and model_path is None and name not in PRETRAINED:
        raise DeepCoreError(
            f"--pre-trained: no published weights for {name} (available for "
            f"{', '.join(PRETRAINED)}); pass --model-path FILE for your own"
        )


def model_names() -> list[str]:
    """Registered network names, sorted (the reference's aliases are not listed)."""
    return MODELS.names()


def check_model_name(name: str) -> None:
    """An unknown network name (not an alias either) lists the valid ones."""
    if name not in MODELS and name not in ALIASES:
        raise unknown_name(MODELS.kind, name, MODELS.names())


def build_model(
    name: str,
    *,
    num_classes: int,
    image_shape: tuple[int, int, int],
    seed: int,
    pretrained: bool = False,
    model_path: str | Path | None = None,
) -> FeatureNet:
    """Build ``name`` with weights initialised from ``seed`` (global RNG untouched).

    ``model_path`` loads a local state dict (``weights_only=True``); its classifier is
    kept only if its shape matches ``num_classes``. ``pretrained`` without a path asks
    torchvision for ImageNet weights (downloads; for online users).
    """
    check_model_name(name)
    check_pretrained(name, pretrained, model_path)
    name = ALIASES.get(name, name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        build = MODELS.get(name)
        net = build(num_classes, tuple(image_shape), bool(pretrained) and model_path is None)
    if model_path is not None:
        load_weights(net, model_path)
    return net


def load_weights(net: FeatureNet, path: str | Path) -> None:
    """Load a local state dict into ``net``; a mismatching classifier is skipped."""
    path = Path(path)
    if not path.is_file():
        raise DeepCoreError(f"model weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DeepCoreError(f"cannot read model weights {path}: {str(e).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DeepCoreError(f"{path} does not hold a state dict")
    own = net.state_dict()
    # Accept plain torchvision checkpoints (keys without the "body." prefix) too.
    mapped = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        if k.startswith("linear."):  # the reference's name for the classifier
            k = "fc." + k.removeprefix("linear.")
        key = k if k in own else f"body.{k}"
        if key.startswith("body.fc."):
            key = key.removeprefix("body.")
        if key in own and own[key].shape == v.shape:
            mapped[key] = v
    if not mapped:
        raise DeepCoreError(f"no tensor in {path} matches the {type(net).__name__} layers")
    missing = [k for k in own if k not in mapped and not k.startswith("fc.")]
    if missing:
        raise DeepCoreError(f"{path} lacks {len(missing)} layers of the model, e.g. {missing[0]!r}")
    net.load_state_dict(mapped, strict=False)


__all__ = ["FeatureNet", "build_model", "check_model_name", "load_weights", "model_names"]
