"""Tests for vlkit.vision.encoder.ImageEncoder: a timm backbone read as region features."""

from __future__ import annotations

import pytest
import timm
import torch

from vlkit.vision import CBAM, BackboneFeatures, ImageEncoder, ImageEncoderOutput
from vlkit.vision.stages import module_path


@pytest.fixture(scope="module")
def stage2_encoder():
    torch.manual_seed(0)
    return ImageEncoder("resnet10t", dim=32, feature_index=2).eval()


def test_features_only_stage2_shapes(stage2_encoder):
    out = stage2_encoder(torch.randn(2, 3, 64, 64))
    assert isinstance(out, ImageEncoderOutput)
    assert out.features.shape == (2, 64, 32)  # 64 / 8 = 8, 8 · 8 = 64 regions
    assert out.grid_size == (8, 8)
    assert out.mask.shape == (2, 64) and out.mask.dtype == torch.bool and out.mask.all()
    assert stage2_encoder.reduction == 8


def test_regions_are_the_row_major_grid_projected():
    torch.manual_seed(0)
    stage2_encoder = ImageEncoder("resnet10t", dim=32, feature_index=2, norm=False).eval()
    image = torch.randn(1, 3, 64, 64)
    out = stage2_encoder(image)
    with torch.no_grad():
        fmap = stage2_encoder.backbone(image)[-1]  # (1, C, 8, 8)
        # region r = row · w + col reads cell (row, col)
        for row, col in [(0, 0), (0, 7), (3, 5), (7, 0)]:
            cell = fmap[0, :, row, col]
            expected = stage2_encoder.proj.weight @ cell + stage2_encoder.proj.bias
            torch.testing.assert_close(out.features[0, row * 8 + col], expected, atol=1e-5, rtol=1e-5)


def test_norm_layer_normalises_each_region(stage2_encoder):
    # default γ = 1, β = 0: every region vector has mean 0 and (biased) variance 1 over d
    out = stage2_encoder(torch.randn(2, 3, 64, 64) * 5)
    mean = out.features.mean(-1)
    var = ((out.features - mean[..., None]) ** 2).mean(-1)
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
    torch.testing.assert_close(var, torch.ones_like(var), atol=1e-3, rtol=0)


def test_last_stage_has_stride_32():
    encoder = ImageEncoder("resnet10t", dim=16, feature_index=-1).eval()
    out = encoder(torch.randn(2, 3, 64, 64))
    assert out.grid_size == (2, 2)
    assert out.features.shape == (2, 4, 16)
    assert encoder.reduction == 32


def test_non_square_input_grid():
    encoder = ImageEncoder("resnet10t", dim=8, feature_index=2).eval()
    out = encoder(torch.randn(1, 3, 32, 64))
    assert out.grid_size == (4, 8)
    assert out.features.shape == (1, 32, 8)


def test_feature_index_out_of_range_raises():
    with pytest.raises(ValueError, match="feature_index"):
        ImageEncoder("resnet10t", dim=8, feature_index=5)  # resnet10t has 5 stages: 0..4


def test_forward_features_vit_drops_prefix_tokens():
    assert timm.is_model("test_vit")
    torch.manual_seed(0)
    encoder = ImageEncoder("test_vit", dim=16, feature_mode="forward_features", norm=False).eval()
    _, height, width = timm.create_model("test_vit").pretrained_cfg["input_size"]
    patch = encoder.backbone.patch_embed.patch_size
    grid = (height // patch[0], width // patch[1])
    n = grid[0] * grid[1]
    assert encoder.num_prefix_tokens >= 1  # a class token to drop
    image = torch.randn(2, 3, height, width)
    out = encoder(image)
    assert out.features.shape == (2, n, 16)
    assert out.grid_size == grid
    assert out.mask.shape == (2, n) and out.mask.all()
    with torch.no_grad():
        tokens = encoder.backbone.forward_features(image)  # (b, prefix + n, C)
    assert tokens.shape[1] == encoder.num_prefix_tokens + n
    expected = tokens[:, encoder.num_prefix_tokens :] @ encoder.proj.weight.T + encoder.proj.bias
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=1e-5)


def test_forward_features_cnn_uses_final_map():
    encoder = ImageEncoder("resnet10t", dim=8, feature_mode="forward_features").eval()
    out = encoder(torch.randn(1, 3, 64, 64))
    assert out.grid_size == (2, 2)
    assert out.features.shape == (1, 4, 8)


def test_unknown_backbone_raises():
    with pytest.raises(ValueError, match="backbone"):
        ImageEncoder("definitely_not_a_timm_model", dim=8)


def test_unknown_feature_mode_raises():
    with pytest.raises(ValueError, match="feature_mode"):
        ImageEncoder("resnet10t", dim=8, feature_mode="pooled")


def test_missing_pretrained_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImageEncoder("resnet10t", dim=8, pretrained_file=str(tmp_path / "missing.pth"))


def test_pretrained_file_round_trip(tmp_path):
    torch.manual_seed(123)
    state = timm.create_model("resnet10t").state_dict()  # full model, features_only=False
    # make the saved values unmistakable, so they cannot match a random init by chance
    g = torch.Generator().manual_seed(7)
    for key in ("conv1.0.weight", "layer1.0.conv1.weight", "layer2.0.bn2.weight"):
        state[key] = torch.randn(state[key].shape, generator=g)
    state["conv1.1.running_mean"] = torch.arange(state["conv1.1.running_mean"].numel(), dtype=torch.float32)
    path = tmp_path / "resnet10t.pth"
    torch.save(state, path)

    torch.manual_seed(0)
    encoder = ImageEncoder("resnet10t", dim=8, feature_index=2, pretrained_file=str(path))
    loaded = encoder.backbone.state_dict()
    # features_only keeps the full model's names for the stages it keeps
    for key in (
        "conv1.0.weight",
        "conv1.1.running_mean",
        "layer1.0.conv1.weight",
        "layer2.0.bn2.weight",
        "layer2.0.conv1.weight",
    ):
        assert torch.equal(loaded[key], state[key]), key
    # stages after the read one and the classifier are not part of the backbone
    assert not any(k.startswith(("layer3.", "layer4.", "fc.")) for k in loaded)

    # and without the file the weights are not the saved ones
    torch.manual_seed(0)
    fresh = ImageEncoder("resnet10t", dim=8, feature_index=2).backbone.state_dict()
    assert not torch.equal(fresh["conv1.0.weight"], state["conv1.0.weight"])


@pytest.mark.parametrize(
    "image",
    [
        torch.randn(2, 1, 64, 64),  # one channel
        torch.randn(3, 64, 64),  # no batch axis
        torch.randn(1, 2, 3, 64, 64),  # 5-D
        torch.randint(0, 255, (1, 3, 64, 64)),  # integer pixels
    ],
    ids=["1ch", "3d", "5d", "int"],
)
def test_bad_input_shape_raises(stage2_encoder, image):
    with pytest.raises(ValueError, match="image"):
        stage2_encoder(image)


def test_gradients_reach_projection_and_backbone():
    torch.manual_seed(0)
    encoder = ImageEncoder("resnet10t", dim=8, feature_index=1)
    out = encoder(torch.randn(2, 3, 32, 32))
    out.features.sum().backward()
    assert (encoder.proj.weight.grad != 0).any()
    assert (encoder.backbone.state_dict(keep_vars=True)["conv1.0.weight"].grad != 0).any()


@pytest.mark.parametrize("feature_mode", ["features_only", "forward_features"])
def test_channels_last_backbone(feature_mode):
    # timm's test_mambaout is a CNN whose feature maps are (b, h, w, C), here (b, 5, 5, 64) at 160 px
    assert timm.create_model("test_mambaout", num_classes=0).output_fmt == "NHWC"
    encoder = ImageEncoder("test_mambaout", dim=8, feature_mode=feature_mode, feature_index=-1).eval()
    out = encoder(torch.randn(1, 3, 160, 160))
    assert out.features.shape == (1, 25, 8)
    assert out.grid_size == (5, 5)


def test_frozen_backbone_gets_no_gradient_and_keeps_batchnorm_statistics():
    torch.manual_seed(0)
    encoder = ImageEncoder("resnet10t", dim=8, feature_index=2, freeze=True).train()
    assert not encoder.backbone.training and encoder.proj.training
    before = {k: v.clone() for k, v in encoder.backbone.state_dict().items()}
    out = encoder(torch.randn(4, 3, 32, 32) * 3 + 1)  # a training-mode pass
    out.features.sum().backward()
    assert all(p.grad is None for p in encoder.backbone.parameters())
    assert encoder.proj.weight.grad is not None and (encoder.proj.weight.grad != 0).any()
    after = encoder.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running means/vars unchanged
    unfrozen = ImageEncoder("resnet10t", dim=8, feature_index=2).train()
    assert unfrozen.backbone.training


# --------------------------------------------------------------------------------------
# attention blocks and partial freezing
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("freeze", [False, True, 2])
@pytest.mark.parametrize("stn", [None, "input", 1, "output"])
@pytest.mark.parametrize("cbam", [None, "stages", "blocks", "output", "regions"])
def test_every_option_combination_runs_forward_and_backward(cbam, stn, freeze):
    from vlkit.vision import CBAM, SpatialTransformer

    torch.manual_seed(0)
    encoder = ImageEncoder("resnet10t", dim=16, feature_index=2, cbam=cbam, stn=stn, freeze=freeze).train()
    out = encoder(torch.randn(2, 3, 32, 32))
    assert out.features.shape == (2, 16, 16)
    assert (out.theta is None) == (stn is None)
    out.features.pow(2).sum().backward()
    for name, p in encoder.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
    blocks = [m for m in encoder.modules() if isinstance(m, CBAM)]
    # 3 stages read; 1 block per layer; 1 on the read map
    assert len(blocks) == {None: 0, "stages": 3, "blocks": 2, "output": 1, "regions": 1}[cbam]
    for block in blocks:  # attention blocks train even inside a frozen backbone
        assert all(p.requires_grad and p.grad is not None for p in block.parameters())
    stns = [m for m in encoder.modules() if isinstance(m, SpatialTransformer)]
    assert len(stns) == (stn is not None)
    if stn is not None:
        assert stns[0].regressor[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "blocks",
    [
        {"cbam": "stages"},
        {"cbam": "blocks"},
        {"stn": "input"},
        {"stn": "input", "stn_localization": "backbone"},
        {"stn": 1},
        {"cbam": "stages", "stn": "input"},
        {"cbam": "output"},
        {"stn": "output"},
        {"cbam": "output", "stn": "output"},
        {"cbam": "regions"},
        {"cbam": "regions", "stn": "output"},
    ],
    ids=lambda b: "+".join(f"{k}={v}" for k, v in b.items()),
)
def test_inserting_cbam_or_stn_leaves_a_pretrained_encoder_unchanged_at_initialisation(blocks):
    """Inserted into a (here randomly) initialised backbone, CBAM with its zero gate and an
    identity-initialised STN give the encoder's output without them, before any step."""
    torch.manual_seed(0)
    plain = ImageEncoder("resnet10t", dim=16, feature_index=2, freeze=True).eval()
    for module in plain.modules():  # as trained weights: timm starts each block's last BN at 0
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.running_var, 0.5, 1.5)
    inserted = ImageEncoder("resnet10t", dim=16, feature_index=2, freeze=True, **blocks).eval()
    missing, unexpected = inserted.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(("cbam" in k or "stn" in k or ".se." in k) for k in missing), (
        missing
    )
    image = torch.randn(2, 3, 48, 48)
    # CBAM alone: exactly; with an STN, to the float rounding of bilinear resampling on the
    # identity grid (about 1e-5 on the image itself)
    tolerance = 1e-5 if "stn" in blocks else 0.0
    with torch.no_grad():
        torch.testing.assert_close(inserted(image).features, plain(image).features, atol=tolerance, rtol=0)
    if "cbam" in blocks:  # the paper's plain block rescales every feature: not the identity
        torch.manual_seed(0)
        ungated = ImageEncoder("resnet10t", dim=16, feature_index=2, freeze=True, cbam_gate=None, **blocks)
        ungated.load_state_dict(plain.state_dict(), strict=False)
        with torch.no_grad():
            assert (ungated.eval()(image).features - plain(image).features).abs().max() > 0.1


def test_a_glimpse_starts_as_the_backbone_on_the_centre_of_the_image():
    """stn_init_scale 0.5 with a 32-pixel output: at initialisation the backbone reads the centre
    32 × 32 pixels of the 64-pixel image, at full resolution (the window can then only move)."""
    torch.manual_seed(0)
    plain = ImageEncoder("resnet10t", dim=16, feature_index=2, freeze=True).eval()
    glimpse = _glimpse_encoder(dim=16).eval()
    glimpse.load_state_dict(plain.state_dict(), strict=False)
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = glimpse(image)
        torch.testing.assert_close(out.features, plain(image[..., 16:48, 16:48]).features, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.theta, torch.tensor([[0.5, 0, 0], [0, 0.5, 0]]).expand(2, 2, 3))
    with pytest.raises(ValueError, match="stn_init_scale=0.5 is for a spatial transformer; set stn"):
        ImageEncoder("resnet10t", stn_init_scale=0.5)


def _glimpse_encoder(**changes) -> ImageEncoder:
    """A frozen resnet10t read at stride 8 behind a glimpse: a translation window of half the
    side, handing the backbone a 32-pixel view (of a 64-pixel image in the tests)."""
    options = {
        "dim": 8,
        "feature_index": 2,
        "freeze": True,
        "stn": "input",
        "stn_output_size": 32,
        "stn_transform": "translation",
        "stn_init_scale": 0.5,
    }
    return ImageEncoder("resnet10t", **{**options, **changes})


def test_a_glimpse_can_be_placed_by_the_frozen_backbones_saliency():
    torch.manual_seed(0)
    encoder = _glimpse_encoder(stn_localization="saliency")
    extra = set(encoder.state_dict()) - set(ImageEncoder("resnet10t", dim=8, feature_index=2).state_dict())
    assert extra == {"input_stn.localization.score.weight", "input_stn.localization.score.bias"}
    image = torch.randn(2, 3, 64, 64)
    torch.nn.init.normal_(encoder.input_stn.localization.score.weight, std=0.1)
    out = encoder(image)
    assert out.features.shape == (2, 16, 8) and (out.theta[:, :, 2].abs() <= 0.5).all()
    assert not torch.equal(out.theta[0, :, 2], out.theta[1, :, 2])  # each image its own place
    out.features.sum().backward()
    assert encoder.input_stn.localization.score.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.backbone.parameters())
    with pytest.raises(ValueError, match="needs stn_transform 'translation'"):
        ImageEncoder("resnet10t", freeze=True, stn="input", stn_localization="saliency")


def test_the_localisation_can_read_a_larger_view_than_the_glimpse():
    """stn_localization_size: the saliency softmax runs over the cells of the frozen backbone's
    map of that view (a 64-pixel view at stride 8: 8 x 8 cells), not of the glimpse's size."""
    torch.manual_seed(0)
    image = torch.randn(2, 3, 64, 64)
    default = _glimpse_encoder(stn_localization="saliency")
    larger = _glimpse_encoder(stn_localization="saliency", stn_localization_size=64)
    assert default.input_stn.localization.attention(image).shape == (2, 4, 4)
    assert larger.input_stn.localization.attention(image).shape == (2, 8, 8)
    assert larger(image).features.shape == (2, 16, 8)  # the backbone still sees the 32-pixel glimpse
    with pytest.raises(ValueError, match="stn_localization_size is the view a 'backbone' or 'saliency'"):
        _glimpse_encoder(stn_localization_size=64)


def test_gated_cbam_learns_its_gate_first():
    from vlkit.vision import CBAM

    torch.manual_seed(0)
    block = CBAM(8, reduction=2, gate="zero")
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), x, atol=0, rtol=0)
    block(x).pow(2).sum().backward()
    assert block.gate.grad.abs() > 0  # the gate moves first; the maps follow once it is not 0
    with pytest.raises(ValueError, match="gate must be None"):
        CBAM(8, gate="one")


def test_cbam_and_localisation_networks_get_their_own_learning_rates():
    from tests.parts import VQA_PARTS
    from vlkit.tasks import Optimization, VQATask
    from vlkit.tasks.optimization import parameter_groups

    encoder = {
        "backbone": "resnet10t",
        "dim": 32,
        "feature_index": 2,
        "freeze": True,
        "cbam": "stages",
        "stn": "input",
    }
    task = VQATask(
        **{**VQA_PARTS, "image_encoder": encoder},
        vocabulary=["<pad>", "<unk>", "what"],
        answers=["a", "b"],
        optimization=Optimization(lr=1e-3, attention_lr_ratio=0.5, localization_lr_ratio=0.1),
    )
    groups = parameter_groups(task, task.model, task.optimization)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    encoder_module = task.model.image_encoder
    assert {rate[id(p)] for p in encoder_module.stage_cbam.parameters()} == {5e-4}
    assert {rate[id(p)] for p in encoder_module.input_stn.parameters()} == {1e-4}
    assert {rate[id(p)] for p in encoder_module.proj.parameters()} == {1e-3}
    with pytest.raises(ValueError, match="localization_lr_ratio >= 0"):
        Optimization(localization_lr_ratio=-1)


def test_freeze_first_k_stages():
    encoder = ImageEncoder("resnet10t", dim=16, feature_index=3, freeze=2).train()
    frozen = {n for n, p in encoder.backbone.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("conv1", "bn1", "layer1.")) for n in frozen)
    assert all(p.requires_grad for n, p in encoder.backbone.named_parameters() if n.startswith("layer2."))
    assert not encoder.backbone.bn1.training and encoder.backbone.layer2[0].bn1.training
    before = encoder.backbone.bn1.running_mean.clone()
    encoder(torch.randn(4, 3, 32, 32))
    torch.testing.assert_close(encoder.backbone.bn1.running_mean, before)  # frozen BN statistics


@pytest.mark.parametrize(
    ("backbone", "feature_index", "freeze"),
    [
        ("resnet10t", 3, 2),
        ("efficientnet_lite0", 3, 3),
        ("mobilenetv3_small_050", 3, 1),
        ("convnext_atto", 2, 1),
        ("resnet10t", 2, 3),  # every stage read is frozen: nothing runs after the cache
    ],
)
def test_the_first_k_frozen_stages_are_cached_and_the_rest_train_on_them(backbone, feature_index, freeze):
    """freeze: k: backbone_features gives the k-th stage's output, and the later stages on it give
    what the image gives, in eval and in training mode (their BatchNorm trains, the frozen
    stages' does not); the gradient reaches the later stages only."""
    torch.manual_seed(0)
    encoder = ImageEncoder(backbone, dim=16, feature_index=feature_index, freeze=freeze, cbam="output")
    assert encoder.cacheable and not encoder._no_grad_backbone
    stage = module_path(encoder.backbone, encoder.backbone.feature_info.module_name()[freeze - 1])
    assert encoder.cached_prefix[-1][0] == stage
    image = torch.randn(3, 3, 64, 64)
    features = encoder.backbone_features(image)
    assert features.feature_map.shape[:2] == (3, encoder.backbone.feature_info.channels()[freeze - 1])
    assert not features.feature_map.requires_grad
    for mode in (False, True):
        encoder.train(mode)
        torch.manual_seed(1)
        direct = encoder(image).features
        torch.manual_seed(1)
        cached = encoder(features)
        torch.testing.assert_close(cached.features, direct, atol=1e-5, rtol=1e-5)
    cached.features.square().sum().backward()
    assert all(p.grad is None for p in encoder.backbone.parameters() if not p.requires_grad)
    reached = any(p.grad is not None for p in encoder.backbone.parameters() if p.requires_grad)
    assert reached == (freeze < len(encoder.backbone.feature_info.module_name()))
    with pytest.raises(ValueError, match=r"output of the last frozen stage.*backbone_features"):
        encoder(BackboneFeatures(torch.zeros(1, 7, 4, 4)))


def test_a_cbam_spatial_map_reaches_the_encoders_output_only_after_its_layernorm():
    """A spatial map scales each cell's features; the per-region LayerNorm undoes that scale
    behind cbam 'output', not behind cbam 'regions', whose map scales the normalised regions."""
    torch.manual_seed(0)
    image = torch.randn(2, 3, 64, 64)
    weight = torch.ones(1, 1, 8, 8)
    weight[..., 4:, :] = 0.1  # the block's spatial map: 1 on the top half of the cells, 0.1 below
    changes = {}
    for placement in ("output", "regions"):
        encoder = ImageEncoder("resnet10t", dim=16, feature_index=2, freeze=True, cbam=placement).eval()
        block = encoder.output_cbam if placement == "output" else encoder.region_cbam
        with torch.no_grad():  # as a trained projection, whose |W f| dwarfs its bias
            encoder.proj.bias.zero_()
            encoder.proj.weight.mul_(100.0)
        base = encoder(image).features
        hooks = [  # channel map 1, that spatial map, the gate fully open
            block.channel.register_forward_hook(lambda m, inputs, out: inputs[0]),
            block.spatial.register_forward_hook(lambda m, inputs, out: inputs[0] * weight),
        ]
        with torch.no_grad():
            block.gate.fill_(1.0)
            out = encoder(image).features
        for hook in hooks:
            hook.remove()
        change = ((out - base).norm(dim=-1) / base.norm(dim=-1)).view(2, 8, 8)
        changes[placement] = (change[:, :4].max().item(), change[:, 4:].mean().item())
    assert changes["output"][1] < 1e-3  # the map's 0.1 undone by the LayerNorm
    assert changes["regions"][1] == pytest.approx(0.9, abs=1e-4)  # the regions scaled by 0.1
    assert changes["regions"][0] < 1e-5 and changes["output"][0] < 1e-5  # map 1: unchanged


def test_cbam_regions_keeps_a_frozen_backbone_cacheable_and_needs_a_spatial_map():
    torch.manual_seed(0)
    encoder = ImageEncoder("resnet10t", dim=16, feature_index=2, freeze=True, cbam="regions").eval()
    assert encoder.cacheable and encoder.region_cbam.channel.fc1.in_channels == 16
    image = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        encoder.region_cbam.gate.fill_(0.7)
        torch.testing.assert_close(
            encoder(encoder.backbone_features(image)).features, encoder(image).features
        )
    vit = ImageEncoder("vit_tiny_patch16_224", dim=16, feature_mode="forward_features", cbam="regions")
    with pytest.raises(ValueError, match="cbam 'regions' needs a spatial feature map"):
        vit(torch.randn(1, 3, 224, 224))


@pytest.mark.parametrize("freeze", [False, 3])
def test_stages_after_the_one_read_are_not_trainable(freeze):
    """timm's EfficientNet extractor keeps blocks 5 and 6 when stage 3 (blocks.4) is read: they
    never reach the output, so they are not counted as trainable (nor optimised)."""
    encoder = ImageEncoder("efficientnet_lite0", dim=8, feature_index=3, freeze=freeze)
    trainable = {  # "blocks.i" -> "i", "conv_stem.weight" -> "conv_stem"
        n.split(".")[n.startswith("blocks.")]
        for n, p in encoder.backbone.named_parameters()
        if p.requires_grad
    }
    assert trainable == ({"0", "1", "2", "3", "4", "conv_stem", "bn1"} if freeze is False else {"3", "4"})
    encoder(torch.randn(2, 3, 32, 32)).features.sum().backward()
    assert all(p.grad is not None for p in encoder.backbone.parameters() if p.requires_grad)


@pytest.mark.parametrize("inside", [{"cbam": "stages"}, {"stn": "input"}, {"stn": 1}, {"cbam": "blocks"}])
def test_blocks_inside_a_partly_frozen_backbone_make_it_uncacheable(inside):
    encoder = ImageEncoder("resnet10t", dim=8, feature_index=2, freeze=1, **inside)
    assert not encoder.cacheable and encoder.cached_prefix is None
    with pytest.raises(ValueError, match=r"freeze: k stages.*cbam / stn to null or 'output'"):
        encoder.backbone_features(torch.randn(1, 3, 32, 32))


def test_cbam_blocks_inside_a_frozen_backbone_train_their_batchnorm():
    """cbam: blocks with a normalised spatial map in a wholly frozen backbone: the backbone's own
    BatchNorms stay in eval mode, the CBAM blocks' follow the encoder's mode."""
    encoder = ImageEncoder(
        "resnet10t", dim=8, feature_index=2, freeze=True, cbam="blocks", cbam_spatial_norm=True
    )
    blocks = [m for m in encoder.backbone.modules() if isinstance(m, CBAM)]
    for _ in range(2):  # as built (training mode), and after .train()
        assert encoder.training and blocks and all(block.spatial.norm.training for block in blocks)
        assert not encoder.backbone.bn1.training
        encoder.train()
    encoder.eval()
    assert not any(block.spatial.norm.training for block in blocks)


def test_freeze_all_runs_without_autograd_unless_blocks_need_it():
    image = torch.randn(2, 3, 32, 32)
    assert ImageEncoder("resnet10t", dim=8, freeze=True)._no_grad_backbone is True
    encoder = ImageEncoder("resnet10t", dim=8, feature_index=2, freeze=True, stn="input")
    encoder(image).features.sum().backward()
    assert encoder.input_stn.regressor[-1].weight.grad.abs().sum() > 0  # gradient crossed the frozen backbone


@pytest.mark.parametrize(
    "blocks", [{"cbam": "output"}, {"stn": "output"}, {"cbam": "output", "stn": "output"}]
)
def test_output_blocks_keep_a_frozen_backbone_cacheable(blocks):
    """CBAM / STN on the read map run after the backbone: a frozen backbone's cached output
    through the blocks gives what the image gives, and the blocks (not the backbone) train."""
    torch.manual_seed(0)
    encoder = ImageEncoder("resnet10t", dim=16, feature_index=2, freeze=True, **blocks)
    assert encoder.cacheable and encoder._no_grad_backbone
    for module in (encoder.output_cbam, encoder.output_stn):  # away from the identity
        for param in [] if module is None else module.parameters():
            torch.nn.init.normal_(param, std=0.3)
    image = torch.randn(2, 3, 48, 48)
    direct = encoder.eval()(image)
    cached = encoder(encoder.backbone_features(image))
    torch.testing.assert_close(cached.features, direct.features)
    assert (direct.theta is None) == ("stn" not in blocks)
    encoder(encoder.backbone_features(image)).features.sum().backward()
    assert all(p.grad is None for p in encoder.backbone.parameters())
    block = encoder.output_stn if "stn" in blocks else encoder.output_cbam
    assert all(p.grad is not None for p in block.parameters())


def test_input_stn_can_hand_the_backbone_a_smaller_image():
    torch.manual_seed(0)
    encoder = ImageEncoder("resnet10t", dim=8, feature_index=2, freeze=True, stn="input", stn_output_size=16)
    out = encoder(torch.randn(2, 3, 64, 64))
    assert out.features.shape == (2, 4, 8)  # a 16-pixel view at stride 8: 2 x 2 regions
    out.features.sum().backward()
    assert encoder.input_stn.regressor[-1].weight.grad.abs().sum() > 0
    wide = ImageEncoder("resnet10t", dim=8, feature_index=2, stn="input", stn_output_size=(16, 32))
    assert wide(torch.randn(1, 3, 64, 64)).features.shape == (1, 8, 8)
    with pytest.raises(ValueError, match="stn_output_size is for stn='input'"):
        ImageEncoder("resnet10t", dim=8, stn="output", stn_output_size=16)


def test_input_stn_can_locate_with_the_frozen_backbone():
    """stn_localization='backbone': the regressor reads the frozen backbone's map of the image resized
    to the STN's output size; the backbone is stored once and gets no gradient, the head trains."""
    torch.manual_seed(0)
    encoder = ImageEncoder(
        "resnet10t",
        dim=8,
        feature_index=2,
        freeze=True,
        stn="input",
        stn_output_size=32,
        stn_localization="backbone",
    )
    plain = ImageEncoder("resnet10t", dim=8, feature_index=2, freeze=True)
    extra = set(encoder.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("input_stn.") and "backbone" not in k for k in extra), sorted(extra)
    image = torch.randn(2, 3, 64, 64)
    localization = encoder.input_stn.localization
    view = torch.nn.functional.interpolate(image, size=(32, 32), mode="bilinear", antialias=True)
    with torch.no_grad():
        expected = localization.head(encoder.backbone(view.contiguous(memory_format=torch.channels_last))[-1])
    torch.testing.assert_close(localization(image), expected)
    assert expected.shape == (2, 16 * 4 * 4)
    torch.nn.init.normal_(encoder.input_stn.regressor[-1].weight, std=0.01)  # away from the identity
    out = encoder(image)
    assert out.features.shape == (2, 16, 8)  # a 32-pixel view at stride 8
    out.features.sum().backward()
    assert all(p.grad is None for p in encoder.backbone.parameters())
    assert all(p.grad is not None for p in localization.head.parameters())
    for bad in ({"freeze": False}, {"stn": "output", "stn_output_size": None}):
        with pytest.raises(ValueError, match="needs stn='input' and freeze=True"):
            ImageEncoder(
                "resnet10t",
                **{
                    "freeze": True,
                    "stn": "input",
                    "stn_output_size": 32,
                    "stn_localization": "backbone",
                    **bad,
                },
            )
    with pytest.raises(ValueError, match="stn_localization must be 'conv', 'backbone' or 'saliency'"):
        ImageEncoder("resnet10t", stn="input", stn_localization="resnet")


def test_output_blocks_need_a_spatial_map():
    encoder = ImageEncoder("test_vit", dim=8, feature_mode="forward_features", cbam="output")
    _, height, width = timm.create_model("test_vit").pretrained_cfg["input_size"]
    with pytest.raises(ValueError, match="spatial feature map"):
        encoder(torch.randn(1, 3, height, width))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cbam": "everywhere"}, "cbam"),
        ({"stn": "outputs"}, "stn"),
        ({"stn": -1}, "stn"),
        ({"stn": 5, "feature_index": 2}, "stn=5"),
        ({"freeze": 0}, "freeze"),
        ({"freeze": 4, "feature_index": 2}, "freeze=4"),
        ({"cbam": "stages", "feature_mode": "forward_features"}, "features_only"),
        ({"backbone": "efficientnet_lite0", "cbam": "blocks"}, "attn_layer"),
    ],
)
def test_option_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageEncoder(**({"backbone": "resnet10t", "dim": 8} | kwargs))


@pytest.mark.parametrize("backbone", ["resnet10t", "efficientnet_lite0"])
def test_channels_last_memory_gives_the_contiguous_outputs(backbone):
    torch.manual_seed(0)
    nhwc = ImageEncoder(backbone, 32, feature_index=2, freeze=True).eval()
    nchw = ImageEncoder(backbone, 32, feature_index=2, freeze=True, memory_format="contiguous").eval()
    nchw.load_state_dict(nhwc.state_dict())
    convs = [
        m.weight for m in nhwc.backbone.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.dim() == 4
    ]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    image = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected, got = nchw(image).features, nhwc(image).features
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="memory_format must be 'channels_last' or 'contiguous'"):
        ImageEncoder(backbone, 32, memory_format="nhwc")


def test_a_frozen_backbone_in_bfloat16_gives_float32_features_close_to_float32():
    from vlkit.data.features import encoder_fingerprint

    torch.manual_seed(0)
    full = ImageEncoder("resnet10t", 32, feature_index=2, freeze=True).eval()
    half = ImageEncoder("resnet10t", 32, feature_index=2, freeze=True, backbone_precision="bf16").eval()
    half.load_state_dict(full.state_dict())
    image = torch.randn(2, 3, 64, 64)
    expected, got = full.backbone_features(image).feature_map, half.backbone_features(image).feature_map
    assert got.dtype == torch.float32 and not torch.equal(got, expected)
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
    assert encoder_fingerprint(half) != encoder_fingerprint(full)  # a cache of bfloat16 features is apart
    with pytest.raises(ValueError, match="backbone_precision 'bf16' is for a frozen backbone"):
        ImageEncoder("resnet10t", 32, backbone_precision="bf16")
