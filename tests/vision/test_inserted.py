import pytest
import torch

from vlkit.vision.cbam import CBAM
from vlkit.vision.inserted import CBAMSettings, STNSettings, build_inserted_blocks
from vlkit.vision.stn import FeatureMapLocalization, SpatialTransformer

WIDTHS = [16, 24, 40]


def build(cbam=None, stn=None, **settings):
    return build_inserted_blocks(
        CBAMSettings(
            cbam, **{k: v for k, v in settings.items() if k in ("reduction", "gate", "spatial_norm")}
        ),
        STNSettings(stn, **{k: v for k, v in settings.items() if k in ("transform", "localization")}),
        WIDTHS,
        channels=40,
        dim=32,
        localization_map=lambda image: torch.zeros(image.shape[0], 40, 2, 2),
    )


def test_nothing_asked_builds_nothing():
    blocks = build()
    assert len(blocks.stage_cbam) == 0
    assert (blocks.input_stn, blocks.stage_stn, blocks.output_stn) == (None, None, None)
    assert (blocks.output_cbam, blocks.region_cbam) == (None, None)


def test_each_placement_builds_its_blocks_at_the_right_width():
    stages = build(cbam="stages", reduction=4, gate="bounded")
    assert [block.channel.channels for block in stages.stage_cbam] == WIDTHS
    assert all(block.gate_kind == "bounded" for block in stages.stage_cbam)
    assert isinstance(build(cbam="output").output_cbam, CBAM)
    assert build(cbam="regions").region_cbam.channel.channels == 32
    assert build(stn=1).stage_stn.in_channels == WIDTHS[1]
    assert build(stn="output").output_stn.in_channels == 40
    input_stn = build(stn="input", localization="backbone").input_stn
    assert isinstance(input_stn, SpatialTransformer) and input_stn.in_channels == 3
    assert isinstance(input_stn.localization, FeatureMapLocalization)


def test_stage_index_out_of_range_says_which_stages_exist():
    with pytest.raises(ValueError, match=r"stn=3: the encoder reads stages 0\.\.2"):
        build(stn=3)


def test_blocks_draw_from_their_own_stream_and_leave_torchs_as_it_was():
    torch.manual_seed(0)
    first = build(cbam="stages", stn="output")
    after_build = torch.rand(4)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(4), after_build)  # what is drawn next is as if nothing was built
    torch.manual_seed(0)
    again = build(cbam="stages", stn="output")
    for a, b in zip(first.stage_cbam.parameters(), again.stage_cbam.parameters(), strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(1)
    other = build(cbam="stages", stn="output")
    assert not torch.equal(first.output_stn.regressor[0].weight, other.output_stn.regressor[0].weight)
