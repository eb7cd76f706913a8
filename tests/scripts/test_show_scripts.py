"""Tests for scripts/show_stn.py and scripts/show_cbam.py."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from vlkit.data import IMAGENET_MEAN, IMAGENET_STD
from vlkit.vision import ImageEncoder

SCRIPTS = Path(__file__).parents[2] / "scripts"


def load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_show_stn_demo_writes_inputs_with_grid_and_outputs(tmp_path):
    show_stn = load("show_stn")
    out = show_stn.main(["--out", str(tmp_path / "stn.png"), "--size", "32"])
    sheet = Image.open(out)
    assert sheet.size == (4 * 40, 2 * 40)
    assert (255, 0, 0) in {sheet.getpixel((x, y)) for x in range(4, 36) for y in range(4, 36)}  # grid drawn


def test_sampling_grid_of_the_identity_covers_the_image():
    show_stn = load("show_stn")
    points = show_stn.sampling_grid(torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]), size=33, lines=3)
    torch.testing.assert_close(points[0, 0, 0], torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(points[0, 2, 2], torch.tensor([32.0, 32.0]))


def test_show_cbam_maps_and_sheet():
    show_cbam = load("show_cbam")
    encoder = ImageEncoder("resnet10t", dim=8, feature_index=2, cbam="stages").eval()
    images = torch.rand(2, 3, 32, 32)
    maps = show_cbam.spatial_maps(encoder, images)
    assert [tuple(m.shape) for m in maps] == [(2, 1, 16, 16), (2, 1, 8, 8), (2, 1, 4, 4)]
    assert all(((m > 0) & (m < 1)).all() for m in maps)
    sheet = show_cbam.render(images, maps)
    assert sheet.size == (4 * 36, 2 * 36)
    with pytest.raises(ValueError, match="no CBAM"):
        show_cbam.spatial_maps(ImageEncoder("resnet10t", dim=8, feature_index=2), images)


@pytest.fixture(
    scope="module", params=[("input", "stages"), ("output", "output")], ids=["in-backbone", "output"]
)
def stn_cbam_ckpt(tmp_path_factory, request) -> str:
    """The main recipe with an STN and CBAM (on the image and after each stage, or both on the
    map the encoder reads), trained 2 steps on tiny data."""
    import json

    import yaml

    from tests.conftest import make_dataset_dict
    from tests.test_cli import TINY, short_fit

    work = tmp_path_factory.mktemp("stn_cbam")
    make_dataset_dict().save_to_disk(str(work / "data"))
    recipe = yaml.safe_load((SCRIPTS.parent / "recipes/vqa/easy_vqa_parallel.yaml").read_text())
    stn, cbam = request.param
    encoder = {**recipe["model"]["init_args"]["image_encoder"], "stn": stn, "cbam": cbam}
    cwd = Path.cwd()
    try:
        os.chdir(work)
        cli = short_fit(
            "vqa/easy_vqa_parallel",
            work / "data",
            TINY,
            "--model.init_args.image_encoder",
            json.dumps(encoder),
        )
    finally:
        os.chdir(cwd)
    return cli.trainer.checkpoint_callback.best_model_path


def test_show_stn_and_cbam_measure_where_they_look(stn_cbam_ckpt, tmp_path, capsys):
    load("show_stn").main(["--ckpt", stn_cbam_ckpt, "--out", str(tmp_path / "stn.png"), "--limit", "4"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    share, baseline = (float(x) for x in re.findall(r"(\d\.\d{3})", line))
    assert line.startswith("easy_vqa test, 4 images:") and 0 < baseline < 1
    assert share == pytest.approx(baseline, abs=0.05)  # 2 steps: the STN is still about the identity
    load("show_cbam").main(["--ckpt", stn_cbam_ckpt, "--out", str(tmp_path / "cbam.png"), "--limit", "4"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    share, uniform = (float(x) for x in re.findall(r"(\d\.\d{3})", line))
    assert "the last CBAM spatial map puts" in line and 0 < uniform <= 1 and 0 < share <= 1


def test_glimpse_gradient_compares_the_windows_gradient_with_the_way_to_the_shape(stn_cbam_ckpt):
    from vlkit.tasks import load_task

    glimpse_gradient = load("glimpse_gradient")
    if load_task(stn_cbam_ckpt).model.image_encoder.input_stn is None:  # the STN on the read map
        with pytest.raises(ValueError, match=r"has no input spatial transformer \(stn: input\)"):
            glimpse_gradient.main(["--ckpt", stn_cbam_ckpt, "--limit", "6"])
        return
    result = glimpse_gradient.main(["--ckpt", stn_cbam_ckpt, "--limit", "6"])
    assert result["questions"] + result["answers_not_in_vocabulary"] == 6 and result["questions"] > 0
    assert 0 <= result["share_towards_shape"] <= 1 and -1 <= result["mean_cosine"] <= 1
    assert result["per_question_gradient_norm"] > 0  # the loss reaches θ's translation


def test_cbam_probe_measures_how_much_of_a_cells_scale_the_region_feature_keeps():
    """A LayerNorm over each region's projection undoes a factor on the cell's features (exactly,
    with no projection bias); without it the region moves by 1 - s."""
    cbam_probe = load("cbam_probe")
    torch.manual_seed(0)
    cells = 10 * torch.randn(2, 4, 4, 128)  # large against LayerNorm's eps
    for norm, expected in ((True, 0.0), (False, 1.0)):
        encoder = ImageEncoder("resnet10t", dim=8, feature_index=2, freeze=True, norm=norm).eval()
        with torch.no_grad():
            encoder.proj.bias.zero_()
        change = cbam_probe.scale_survival(encoder, cells, (0.5, 0.1))
        assert change == pytest.approx({0.5: 0.5 * expected, 0.1: 0.9 * expected}, abs=1e-3)
    with torch.no_grad():
        encoder.proj.bias.fill_(1.0)  # with a bias, a small factor leaves mostly the bias
    assert cbam_probe.scale_survival(encoder, cells, (0.5,))[0.5] != pytest.approx(0.5, abs=1e-3)


def test_cbam_probe_fits_a_separable_rule_and_reads_what_the_spatial_branch_reads():
    cbam_probe = load("cbam_probe")
    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] - 2 * x[:, 2] > 0.3).float()
    probe = cbam_probe.fit_logistic(100 * x, y)  # standardised inside: the scale does not matter
    assert ((probe(100 * x)[:, 0] > 0).float() == y).float().mean() > 0.98
    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64)
    plain = ImageEncoder(
        "resnet10t", dim=8, feature_index=2, freeze=True, cbam="output", cbam_gate=None
    ).eval()
    pooled, channels, weight = cbam_probe.probe_inputs(plain, images)
    assert pooled.shape == (2, 8, 8, 98) and channels.shape == (2, 8, 8, 128) and weight.shape == (2, 8, 8)
    conv = plain.output_cbam.spatial.conv  # the probe's inputs, weighted as the convolution weighs them
    normalised = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(images)  # as the probe reads them
    m_s = plain.output_cbam.spatial_map(plain.backbone_features(normalised).feature_map)[:, 0]
    torch.testing.assert_close(torch.sigmoid(pooled @ conv.weight.flatten() + conv.bias), m_s)
    # the spatial weight is the block's own multiplier of each feature, averaged over the channels
    positive = torch.rand(2, 128, 8, 8) + 0.5
    gated = ImageEncoder("resnet10t", dim=8, feature_index=2, freeze=True, cbam="output").eval()
    with torch.no_grad():
        gated.output_cbam.gate.fill_(-0.5)
    for block in (plain.output_cbam, gated.output_cbam):
        with torch.no_grad():
            multiplier = (block(positive) / positive).mean(1)
        torch.testing.assert_close(cbam_probe.spatial_weight(block, positive), multiplier)
    assert (cbam_probe.spatial_weight(gated.output_cbam, positive) > 1).all()  # g < 0: a gain
    regions = ImageEncoder("resnet10t", dim=8, feature_index=2, freeze=True, cbam="regions").eval()
    pooled, channels, weight = cbam_probe.probe_inputs(regions, images)
    assert pooled.shape == (2, 8, 8, 98) and channels.shape == (2, 8, 8, 8) and weight.shape == (2, 8, 8)
    with pytest.raises(ValueError, match="no CBAM block on its read map or its regions"):
        cbam_probe.probe_inputs(ImageEncoder("resnet10t", dim=8, feature_index=2), torch.rand(1, 3, 32, 32))
    with_stn = ImageEncoder("resnet10t", dim=8, feature_index=2, freeze=True, cbam="output", stn="output")
    with pytest.raises(ValueError, match="spatial transformer before its CBAM block"):
        cbam_probe.probe_inputs(with_stn, torch.rand(1, 3, 32, 32))


def test_cbam_parts_replaces_one_part_of_the_block_at_a_time():
    cbam_parts = load("cbam_parts")
    torch.manual_seed(0)
    encoder = ImageEncoder("resnet10t", dim=16, feature_index=2, freeze=True, cbam="regions").eval()
    block = cbam_parts.cbam_block(encoder)
    with torch.no_grad():
        block.gate.fill_(-1.5)
    image = torch.rand(2, 3, 64, 64)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        trained = encoder(image).features
        maps = cbam_parts.spatial_maps(block, lambda: block(x))
        assert maps.shape == (2, 1, 8, 8)
        torch.testing.assert_close(maps, block.spatial.attention_map(block.channel(x)))
        for part, expected in (
            ("no spatial map", x + block.gate * (block.channel(x) - x)),
            ("no channel map", x + block.gate * (block.spatial(x) - x)),
            ("block off", x),
        ):
            with cbam_parts.replaced(block, part):
                torch.testing.assert_close(block(x), expected)
        with cbam_parts.replaced(block, "spatial map averaged", torch.ones(1, 1, 8, 8)):
            torch.testing.assert_close(block(x), x + block.gate * (block.channel(x) - x))
        with cbam_parts.replaced(block, "block off"):
            assert not torch.allclose(encoder(image).features, trained)
        torch.testing.assert_close(encoder(image).features, trained)  # the hooks are removed
    with pytest.raises(ValueError, match="unknown part"), cbam_parts.replaced(block, "gate"):
        pass
    with (
        pytest.raises(ValueError, match="needs the mean map"),
        cbam_parts.replaced(block, "spatial map averaged"),
    ):
        pass
    with pytest.raises(ValueError, match="no CBAM block"):
        cbam_parts.cbam_block(ImageEncoder("resnet10t", dim=8, feature_index=2))
