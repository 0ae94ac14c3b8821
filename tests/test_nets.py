"""Networks: output shapes, and the reference's PreActResNets written out as functions."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from deep_core.errors import DeepCoreError
from deep_core.nets import build_model, check_model_name, load_weights, model_names

SMALL = [n for n in model_names() if n != "InceptionResNetV2"]


@pytest.mark.parametrize("name", SMALL)
def test_output_and_feature_shapes(name):
    net = build_model(name, num_classes=7, image_shape=(3, 32, 32), seed=0).eval()
    with torch.no_grad():
        logits, h = net.forward_features(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7) and h.shape == (2, net.feature_dim)
    assert torch.allclose(net.fc(h), logits)


def _randomise_batchnorm(net: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _bn(m, t):
    return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)


def reference_forward(net, x, pre_activation: bool):
    """The reference's PreActResNet forward (eval mode) on ``net``'s parameters."""
    out = F.relu(_bn(net.bn1, F.conv2d(x, net.conv1.weight, padding=1)))  # BN-ReLU stem
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        for blk in layer:
            stride = blk.conv1.stride
            if pre_activation:  # PreActBlock: the shortcut reads relu(bn1(x)), even as identity
                a = F.relu(_bn(blk.bn1, out))
                sc = F.conv2d(a, blk.shortcut[0].weight, stride=stride) if len(blk.shortcut) else a
                o = F.conv2d(a, blk.conv1.weight, stride=stride, padding=1)
                out = F.conv2d(F.relu(_bn(blk.bn2, o)), blk.conv2.weight, padding=1) + sc
            else:  # BasicBlock (the reference's PreActResNet34)
                o = F.relu(_bn(blk.bn1, F.conv2d(out, blk.conv1.weight, stride=stride, padding=1)))
                o = _bn(blk.bn2, F.conv2d(o, blk.conv2.weight, padding=1))
                sc = out
                if not isinstance(blk.shortcut, torch.nn.Identity):
                    sc = _bn(blk.shortcut[1], F.conv2d(out, blk.shortcut[0].weight, stride=stride))
                out = F.relu(o + sc)
    features = F.avg_pool2d(out, 4).flatten(1)  # no final BN-ReLU
    return F.linear(features, net.fc.weight, net.fc.bias), features


@pytest.mark.parametrize(
    "name,pre_activation", [("PreActResNet18", True), ("PreActResNet34", False)]
)
def test_preact_resnets_are_the_references(name, pre_activation):
    net = build_model(name, num_classes=10, image_shape=(3, 32, 32), seed=1).eval()
    _randomise_batchnorm(net, 2)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits, h = net.forward_features(x)
        ref_logits, ref_h = reference_forward(net, x, pre_activation)
    assert torch.allclose(h, ref_h, atol=1e-5) and torch.allclose(logits, ref_logits, atol=1e-5)


def test_reference_features_can_be_negative_and_the_he_variant_s_cannot():
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = build_model("PreActResNet18", num_classes=10, image_shape=(3, 32, 32), seed=0)
        he = build_model("PreActResNet18He", num_classes=10, image_shape=(3, 32, 32), seed=0)
        assert float(ref.eval().embed(x).min()) < 0
        assert float(he.eval().embed(x).min()) >= 0


def test_reference_checkpoint_names_load(tmp_path):
    src = build_model("PreActResNet18", num_classes=10, image_shape=(3, 32, 32), seed=4).eval()
    state = {k.replace("fc.", "linear.", 1) if k.startswith("fc.") else k: v
             for k, v in src.state_dict().items()}  # fmt: skip
    torch.save(state, tmp_path / "ref.pt")
    dst = build_model("PreActResNet18", num_classes=10, image_shape=(3, 32, 32), seed=5).eval()
    load_weights(dst, tmp_path / "ref.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_inception_resnet_v2_needs_timm(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(DeepCoreError, match=r"pip install deep-core-noisy\[timm\]"):
        build_model("InceptionResNetV2", num_classes=5, image_shape=(3, 75, 75), seed=0)


def test_inception_resnet_v2_through_timm_without_weights(monkeypatch):
    timm = pytest.importorskip("timm")
    calls = []
    create = timm.create_model

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return create(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    check_model_name("Inception_ResNetv2")  # the reference's spelling
    net = build_model("Inception_ResNetv2", num_classes=5, image_shape=(3, 75, 75), seed=0).eval()
    assert calls == [{"pretrained": False, "num_classes": 0, "in_chans": 3}]
    with torch.no_grad():
        logits, h = net.forward_features(torch.randn(2, 3, 75, 75))
    assert logits.shape == (2, 5) and h.shape == (2, 1536) and float(h.min()) >= 0
    with pytest.raises(DeepCoreError, match="at least 75"):
        build_model("InceptionResNetV2", num_classes=5, image_shape=(3, 32, 32), seed=0)
