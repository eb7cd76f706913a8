import pytest
import timm

from vlkit.vision.backbone import create_backbone
from vlkit.vision.inserted import CBAMSettings


def test_features_only_reads_the_stages_up_to_the_one_asked():
    built = create_backbone("resnet10t", feature_index=2)
    info = timm.create_model("resnet10t", features_only=True).feature_info
    assert built.stage_names == info.module_name()[:3]
    assert built.stage_channels == info.channels()[:3]
    assert (built.channels, built.reduction) == (info.channels()[2], info.reduction()[2])


def test_forward_features_has_no_stages():
    built = create_backbone("resnet10t", feature_mode="forward_features")
    assert (built.channels, built.reduction, built.stage_names) == (built.module.num_features, None, [])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feature_mode": "pooled"}, "unknown feature_mode 'pooled'"),
        ({"feature_index": 7}, "feature_index 7 out of range for 5 stages"),
        ({"pretrained_file": "/nonexistent.pth"}, "does not exist"),
    ],
)
def test_bad_settings_say_what_was_wrong(kwargs, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        create_backbone("resnet10t", **kwargs)


def test_cbam_in_blocks_goes_inside_every_residual_block():
    built = create_backbone("resnet10t", block_cbam=CBAMSettings("blocks", reduction=4))
    blocks = [m for m in built.module.modules() if type(m).__name__ == "BasicBlock"]
    assert blocks and all(type(block.se).__name__ == "CBAM" for block in blocks)
