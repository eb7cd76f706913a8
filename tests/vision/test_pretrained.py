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
ESPRESSO, TABBY_CAT, MISSILE = 967, 281, 657


@pytest.fixture(scope="module")
def lite0_file(tmp_path_factory):
    import os

    old = os.environ.get("VLKIT_CACHE")
    os.environ["VLKIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield packaged_weights_file("efficientnet_lite0")
    finally:
        if old is None:
            os.environ.pop("VLKIT_CACHE")
        else:
            os.environ["VLKIT_CACHE"] = old


def test_converted_weights_load_strictly_into_timm(lite0_file):
    state = torch.load(lite0_file, map_location="cpu", weights_only=True)
    model = timm.create_model("efficientnet_lite0")
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert unexpected == []
    assert all(k.endswith("num_batches_tracked") for k in missing)


def test_conversion_is_cached(lite0_file):
    before = lite0_file.stat().st_mtime_ns
    assert packaged_weights_file("efficientnet_lite0") == lite0_file
    assert lite0_file.stat().st_mtime_ns == before


@pytest.mark.parametrize("photo, label", [("coffee", ESPRESSO), ("chelsea", TABBY_CAT), ("rocket", MISSILE)])
def test_packaged_weights_classify_real_photos(lite0_file, photo, label):
    model = timm.create_model(
        "efficientnet_lite0", pretrained=True, pretrained_cfg_overlay={"file": str(lite0_file)}
    ).eval()
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
        probs = model(transform(image)[None]).softmax(-1)[0]
    assert probs.argmax().item() == label


def test_image_encoder_uses_the_packaged_weights(lite0_file):
    encoder = ImageEncoder("efficientnet_lite0", dim=8, feature_index=3, packaged_weights=True)
    state = torch.load(lite0_file, map_location="cpu", weights_only=True)
    loaded = encoder.backbone.state_dict()
    for name in ("conv_stem.weight", "bn1.running_mean", "blocks.2.0.conv_pw.weight"):
        assert torch.equal(loaded[name], state[name])


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="no packaged weights for 'resnet10t'.*efficientnet_lite0"):
        packaged_weights_file("resnet10t")
    with pytest.raises(ValueError, match="not both"):
        ImageEncoder("efficientnet_lite0", packaged_weights=True, pretrained_file="x.pth")
    assert set(PACKAGED_WEIGHTS) == {"efficientnet_lite0"}
