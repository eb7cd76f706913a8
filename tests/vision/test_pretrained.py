"""Packaged ImageNet weights: conversion to timm names, caching, and real classifications."""

from __future__ import annotations

import pytest
import skimage.data
import timm
import torch
from PIL import Image
from torchvision.transforms import v2

from vlkit.vision import PACKAGED_WEIGHTS, ImageEncoder, packaged_weights_file

# ImageNet-1k class indices
ESPRESSO, MISSILE = 967, 657
DOMESTIC_CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


BACKBONES = ["efficientnet_lite0", "mobilenetv2_100"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    import os

    old = os.environ.get("VLKIT_CACHE")
    os.environ["VLKIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("VLKIT_CACHE")
        else:
            os.environ["VLKIT_CACHE"] = old


@pytest.fixture(scope="module", params=BACKBONES)
def converted(request, cache_dir):
    """(backbone, path of its converted packaged weights)."""
    return request.param, packaged_weights_file(request.param)


@pytest.fixture(scope="module")
def lite0_file(cache_dir):
    return packaged_weights_file("efficientnet_lite0")


def test_converted_weights_load_strictly_into_timm(converted):
    backbone, path = converted
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(backbone)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert unexpected == []
    assert all(k.endswith("num_batches_tracked") for k in missing)


def test_conversion_is_cached(lite0_file):
    before = lite0_file.stat().st_mtime_ns
    assert packaged_weights_file("efficientnet_lite0") == lite0_file
    assert lite0_file.stat().st_mtime_ns == before


def classify(backbone, path, photo):
    model = timm.create_model(backbone, pretrained=True, pretrained_cfg_overlay={"file": str(path)}).eval()
    cfg = model.pretrained_cfg
    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(256, antialias=True),
            v2.CenterCrop(224),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(cfg["mean"], cfg["std"]),
        ]
    )
    image = Image.fromarray(getattr(skimage.data, photo)()).convert("RGB")
    with torch.no_grad():
        return model(transform(image)[None]).softmax(-1)[0]


def test_packaged_weights_classify_real_photos(converted):
    backbone, path = converted
    assert classify(backbone, path, "coffee").argmax().item() == ESPRESSO
    assert classify(backbone, path, "chelsea").argmax().item() in DOMESTIC_CATS  # Chelsea the cat
    assert MISSILE in classify(backbone, path, "rocket").topk(5).indices.tolist()


def test_converted_mobilenet_v2_computes_what_torchvision_computes(cache_dir):
    from torchvision.models import mobilenet_v2

    from vlkit.vision.pretrained import PACKAGED_WEIGHTS

    reference = mobilenet_v2()
    reference.load_state_dict(torch.load(PACKAGED_WEIGHTS["mobilenetv2_100"](), weights_only=True))
    path = packaged_weights_file("mobilenetv2_100")
    model = timm.create_model("mobilenetv2_100", pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x), atol=1e-4, rtol=1e-4)


def test_image_encoder_uses_the_packaged_weights(lite0_file):
    encoder = ImageEncoder("efficientnet_lite0", dim=8, feature_index=3, packaged_weights=True)
    state = torch.load(lite0_file, map_location="cpu", weights_only=True)
    loaded = encoder.backbone.state_dict()
    for name in ("conv_stem.weight", "bn1.running_mean", "blocks.2.0.conv_pw.weight"):
        assert torch.equal(loaded[name], state[name])


def test_errors_name_the_fix():
    with pytest.raises(
        ValueError, match="no packaged weights for 'resnet10t'.*efficientnet_lite0.*mobilenetv2_100"
    ):
        packaged_weights_file("resnet10t")
    with pytest.raises(ValueError, match="not both"):
        ImageEncoder("efficientnet_lite0", packaged_weights=True, pretrained_file="x.pth")
    assert set(PACKAGED_WEIGHTS) == set(BACKBONES)


def test_image_encoder_loads_each_packaged_backbone(converted):
    backbone, path = converted
    encoder = ImageEncoder(backbone, dim=8, feature_index=3, packaged_weights=True)
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(encoder.backbone.state_dict()["conv_stem.weight"], state["conv_stem.weight"])


def test_converting_does_not_draw_from_the_global_generator(tmp_path, monkeypatch):
    # a seeded run must initialise the same whether or not the weights were converted before
    monkeypatch.setenv("VLKIT_CACHE", str(tmp_path))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    path = packaged_weights_file("efficientnet_lite0")  # converts: a fresh cache
    assert path.is_file() and str(path).startswith(str(tmp_path))
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)
