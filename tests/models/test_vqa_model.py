"""Tests for vlkit.models: the model presets, VQAHead, and VQAModel assembled from its part configurations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlkit.fusion import FusionOutput, list_fusions
from vlkit.models import (
    VQAHead,
    VQAModel,
    VQAOutput,
    create_model,
    list_models,
    model_preset,
    register_model,
    registry,
)

NUM_ANSWERS, VOCAB = 7, 20
#: small parts: regions and tokens 32 wide, 16-wide co-attention and head
SMALL = {
    "image_encoder": {"backbone": "resnet10t", "feature_index": 2, "dim": 32},
    "text_encoder": {"name": "lstm", "dim": 32, "embed_dim": 8},
    "head": {"hidden_dim": 16, "dropout": 0.1},
}
COATTENTION = ("parallel_coattention", "alternating_coattention")


def small_model(fusion="parallel_coattention", seed=0, **overrides):
    """``vqa_small`` with :data:`SMALL` parts and ``fusion`` (a name or a mapping), in eval mode."""
    torch.manual_seed(seed)
    fusion = {"name": fusion} if isinstance(fusion, str) else fusion
    parts = {**SMALL, "fusion": {"hidden_dim": 16, "dropout": 0.1, **fusion}, **overrides}
    return create_model("vqa_small", num_answers=NUM_ANSWERS, vocab_size=VOCAB, **parts).eval()


# --------------------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------------------
def test_list_models_filters_by_pattern():
    assert list_models("vqa_*") == ["vqa_small"]
    assert list_models("caption_*") == ["caption_sat_small", "caption_transformer_small"]
    assert list_models("*_small") == sorted(list_models())
    assert list_models("no_such_prefix_*") == []


def test_create_unknown_model_lists_registered_names():
    with pytest.raises(ValueError, match="nope") as info:
        create_model("nope")
    for name in list_models():
        assert name in str(info.value)


def test_a_preset_is_a_model_class_and_its_parts():
    model_class, parts = model_preset("vqa_small")
    assert model_class is VQAModel and set(parts) == {"image_encoder", "text_encoder", "fusion", "head"}
    parts["fusion"] = "mcan"  # a copy: the registered preset does not change
    assert model_preset("vqa_small")[1]["fusion"]["name"] == "parallel_coattention"


def test_register_model_and_duplicate(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # keep the global registry clean
    register_model("tiny_vqa", VQAModel, fusion="product", **SMALL)
    assert list_models("tiny_*") == ["tiny_vqa"]
    model = create_model("tiny_vqa", num_answers=5, vocab_size=VOCAB)
    assert model.fusion.mode == "product" and model.head.net[-1].out_features == 5
    with pytest.raises(ValueError, match="'tiny_vqa' is already registered"):
        register_model("tiny_vqa", VQAModel)
    with pytest.raises(ValueError, match="'vqa_small' is already registered"):
        register_model("vqa_small", VQAModel)


# --------------------------------------------------------------------------------------
# VQA models with the co-attention fusions
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", COATTENTION)
def test_coattention_models_give_logits_and_weights(fusion):
    model = small_model(fusion)
    assert isinstance(model, VQAModel)
    image = torch.randn(2, 3, 64, 64)
    ids = torch.tensor([[3, 4, 5, 6, 0], [7, 8, 0, 0, 0]])
    out = model(image, ids)
    assert isinstance(out, VQAOutput)
    assert out.logits.shape == (2, NUM_ANSWERS)
    assert out.image_weights.shape == (2, 64)  # resnet10t stage 2: 64 / 8 = 8 → 8 · 8 regions
    assert out.grid_size == (8, 8)
    assert out.text_weights.shape == (2, 5)
    assert torch.isfinite(out.logits).all()
    torch.testing.assert_close(out.image_weights.sum(-1), torch.ones(2))
    torch.testing.assert_close(out.text_weights.sum(-1), torch.ones(2))
    assert (out.text_weights[ids == 0] == 0).all()


@pytest.mark.parametrize("fusion", COATTENTION)
def test_trailing_padding_does_not_change_logits(fusion):
    model = small_model(fusion, seed=3)
    image = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[3, 4, 5, 0], [9, 2, 0, 0]])
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], dim=1)  # 3 extra pads
    out, out_padded = model(image, ids), model(image, padded)
    torch.testing.assert_close(out_padded.logits, out.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_padded.image_weights, out.image_weights, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out_padded.text_weights[:, :4], out.text_weights, atol=1e-6, rtol=1e-6)
    assert (out_padded.text_weights[:, 4:] == 0).all()


@pytest.mark.parametrize("fusion", COATTENTION)
def test_gradients_reach_every_parameter(fusion):
    model = small_model({"name": fusion, "dropout": 0.0}, head={"hidden_dim": 16, "dropout": 0.0}).train()
    # timm ResNets zero-init the last BatchNorm of each residual block (zero_init_last), which
    # blocks gradients into that block's earlier convolutions at step 0; undo it for this check
    for module in model.image_encoder.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
    out = model(torch.randn(2, 3, 32, 32), torch.tensor([[3, 4, 5], [6, 0, 0]]))
    (out.logits * torch.randn_like(out.logits)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not (p.grad != 0).any()]
    assert missing == []


# --------------------------------------------------------------------------------------
# VQAModel wiring, with stub parts so the fused vector is known exactly
# --------------------------------------------------------------------------------------
class StubImageEncoder(nn.Module):
    def forward(self, image):
        b = image.shape[0]
        return torch.zeros(b, 4, 3), torch.ones(b, 4, dtype=torch.bool)


class StubTextEncoder(nn.Module):
    def forward(self, ids, mask=None):
        mask = ids != 0 if mask is None else mask
        return torch.zeros(*ids.shape, 3), mask


class FixedFusion(nn.Module):
    """Returns a fixed fused vector (and weights, unless ``with_weights=False``)."""

    def __init__(self, fused, with_weights=True):
        super().__init__()
        self.fused, self.with_weights = fused, with_weights

    def forward(self, image, image_mask, text, text_mask):
        fused = self.fused.expand(image.shape[0], -1)
        if not self.with_weights:
            return FusionOutput(fused)
        return FusionOutput(
            fused, image_weights=image_mask.float() / image_mask.shape[1], text_weights=text_mask.float()
        )


FUSED = torch.tensor([[1.0, 2.0, -3.0]])


def test_model_feeds_fused_vector_to_head_and_passes_weights():
    model = VQAModel(StubImageEncoder(), StubTextEncoder(), FixedFusion(FUSED), nn.Identity())
    out = model(torch.zeros(1, 3, 8, 8), torch.tensor([[2, 3, 0]]))
    torch.testing.assert_close(out.logits, FUSED)  # identity head: logits = fused vector
    assert out.image_weights.shape == (1, 4)
    assert torch.equal(out.text_weights, torch.tensor([[1.0, 1.0, 0.0]]))


def test_fusion_without_weights_gives_none():
    model = VQAModel(
        StubImageEncoder(), StubTextEncoder(), FixedFusion(FUSED, with_weights=False), nn.Identity()
    )
    out = model(torch.zeros(2, 3, 8, 8), torch.tensor([[2, 3], [4, 0]]))
    assert out.image_weights is None and out.text_weights is None
    torch.testing.assert_close(out.logits, FUSED.expand(2, -1))


# --------------------------------------------------------------------------------------
# VQAHead (the registry's heads are ClassificationHead; VQAHead names its classes answers)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_answers", [0, -3])
def test_head_rejects_no_answers(num_answers):
    with pytest.raises(ValueError, match="num_answers"):
        VQAHead(8, num_answers)


def test_head_shape_and_formula():
    torch.manual_seed(0)
    head = VQAHead(5, 3, hidden_dim=4).eval()
    x = torch.randn(2, 5)
    logits = head(x)
    assert logits.shape == (2, 3)
    # logits = W_h tanh(W x + b) + b_h
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2
    w, w_h = linears
    expected = torch.tanh(x @ w.weight.T + w.bias) @ w_h.weight.T + w_h.bias
    torch.testing.assert_close(logits, expected)


def test_head_single_answer():
    assert VQAHead(4, 1, hidden_dim=2)(torch.randn(3, 4)).shape == (3, 1)


@pytest.mark.parametrize("combine, width", [("concat", 64), ("product", 32), ("sum", 32)])
def test_combine_sets_the_head_width(combine, width):
    model = small_model({"name": "parallel_coattention", "combine": combine})
    assert model.fusion.combine == combine and model.fusion.output_dim == width
    assert model.head.net[1].in_features == width
    assert model(torch.randn(2, 3, 32, 32), torch.tensor([[3, 4], [5, 0]])).logits.shape == (2, NUM_ANSWERS)


def test_image_encoder_options_reach_the_image_encoder(tmp_path, monkeypatch):
    import timm

    monkeypatch.setenv("VLKIT_CACHE", str(tmp_path))
    image_encoder = {
        "backbone": "efficientnet_lite0",
        "feature_index": 3,
        "packaged_weights": True,
        "freeze": True,
        "dim": 16,
    }
    model = small_model(image_encoder=image_encoder)
    encoder = model.image_encoder
    assert encoder.freeze and not any(p.requires_grad for p in encoder.backbone.parameters())
    from vlkit.vision import packaged_weights_file

    state = torch.load(packaged_weights_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert torch.equal(encoder.backbone.state_dict()["conv_stem.weight"], state["conv_stem.weight"])
    fresh = timm.create_model("efficientnet_lite0", features_only=True, out_indices=(3,))
    assert not torch.equal(fresh.state_dict()["conv_stem.weight"], state["conv_stem.weight"])
    # pretrained=False (a checkpoint's rebuild): the same architecture without the packaged weights
    torch.manual_seed(0)
    rebuilt = VQAModel.from_config(NUM_ANSWERS, VOCAB, image_encoder, "lstm", "product", pretrained=False)
    weight = rebuilt.image_encoder.backbone.state_dict()["conv_stem.weight"]
    assert weight.shape == state["conv_stem.weight"].shape and not torch.equal(
        weight, state["conv_stem.weight"]
    )


# --------------------------------------------------------------------------------------
# parts from the attention library: Transformer question encoder, hard attention, CBAM, STN
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", COATTENTION)
def test_transformer_text_encoder(fusion):
    from vlkit.text import TransformerTextEncoder

    text = {"name": "transformer", "dim": 32, "depth": 3, "num_heads": 2, "positions": "learned"}
    model = small_model(fusion, text_encoder=text)
    assert isinstance(model.text_encoder, TransformerTextEncoder) and len(model.text_encoder.blocks) == 3
    ids = torch.tensor([[3, 4, 5, 0], [9, 2, 0, 0]])
    image = torch.randn(2, 3, 32, 32)
    out = model(image, ids)
    padded = model(image, torch.cat([ids, torch.zeros(2, 2, dtype=torch.long)], 1))
    torch.testing.assert_close(padded.logits, out.logits, atol=1e-5, rtol=1e-5)
    assert (out.text_weights[ids == 0] == 0).all()


def test_unknown_text_encoder_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown text_encoder 'gru'; valid: \['embedding', 'hf', 'lstm'"):
        small_model(text_encoder="gru")


@pytest.mark.parametrize("fusion", COATTENTION)
@pytest.mark.parametrize("estimator", ["gumbel", "reinforce"])
def test_hard_image_context_picks_one_region(fusion, estimator):
    from vlkit.attention import HardContext

    model = small_model({"name": fusion, "image_context": estimator})
    hard = [m for m in model.modules() if isinstance(m, HardContext)]
    assert len(hard) == 1 and hard[0].estimator == estimator
    image, ids = torch.randn(2, 3, 32, 32), torch.tensor([[3, 4, 5, 0], [9, 2, 0, 0]])
    # the attended image vector is one region: capture it at the fusion's output
    captured = {}
    model.fusion.register_forward_hook(lambda m, i, o: captured.update(image=o.image, inputs=i))
    model.eval()(image, ids)
    regions, weights = captured["inputs"][0], model(image, ids).image_weights
    torch.testing.assert_close(captured["image"], regions[torch.arange(2), weights.argmax(-1)])


def test_hard_attention_gumbel_gradients_reach_the_image_attention():
    model = small_model({"name": "alternating_coattention", "image_context": "gumbel"}).train()
    out = model(torch.randn(2, 3, 32, 32), torch.tensor([[3, 4, 5, 0], [9, 2, 0, 0]]))
    out.logits.pow(2).sum().backward()
    for name, p in model.fusion.attend_image.named_parameters():
        if "context" not in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_cbam_stn_and_partial_freeze_reach_the_image_encoder():
    from vlkit.vision import CBAM, SpatialTransformer

    image_encoder = {**SMALL["image_encoder"], "cbam": "stages", "stn": "input", "freeze": 1}
    model = small_model(image_encoder=image_encoder)
    encoder = model.image_encoder
    assert sum(isinstance(m, CBAM) for m in encoder.modules()) == 3
    assert isinstance(encoder.input_stn, SpatialTransformer) and encoder.freeze == 1
    out = model.train()(torch.randn(2, 3, 32, 32), torch.tensor([[3, 4, 0], [5, 0, 0]]))
    out.logits.sum().backward()
    assert encoder.input_stn.regressor[-1].weight.grad is not None


@pytest.mark.parametrize(
    "blocks",
    [
        {"cbam": "output"},
        {"cbam": "stages"},
        {"stn": "input"},
        {"stn": 1},
        {"stn": "output"},
        {"cbam": "output", "stn": "output"},
    ],
    ids=lambda b: "+".join(f"{k}={v}" for k, v in b.items()),
)
def test_inserted_blocks_leave_the_rest_of_the_models_initialisation_unchanged(blocks):
    """With the same seed, a model with CBAM or spatial-transformer blocks starts every weight it
    shares with the model without them at the same value, so the two differ only by what the
    blocks learn: the blocks initialise from a random stream of their own."""
    plain = small_model(seed=3)
    inserted = small_model(seed=3, image_encoder={**SMALL["image_encoder"], **blocks})
    shared = plain.state_dict()
    extra = set(inserted.state_dict()) - set(shared)
    assert extra and all("cbam" in k or "stn" in k for k in extra), sorted(extra)
    for name, value in shared.items():
        torch.testing.assert_close(inserted.state_dict()[name], value, atol=0, rtol=0, msg=name)
    image, question = torch.randn(2, 3, 32, 32), torch.tensor([[3, 4, 0], [5, 0, 0]])
    with torch.no_grad():  # and, the blocks starting as the identity, the same answers
        torch.testing.assert_close(
            inserted(image, question).logits, plain(image, question).logits, atol=1e-5, rtol=0
        )
    # the blocks' own weights still follow the seed
    again = small_model(seed=3, image_encoder={**SMALL["image_encoder"], **blocks})
    other = small_model(seed=4, image_encoder={**SMALL["image_encoder"], **blocks})
    block = next(k for k in sorted(extra) if k.endswith("weight") and inserted.state_dict()[k].std() > 0)
    assert torch.equal(again.state_dict()[block], inserted.state_dict()[block])
    assert not torch.equal(other.state_dict()[block], inserted.state_dict()[block])


# --------------------------------------------------------------------------------------
# vqa_small with every fusion of the registry
# --------------------------------------------------------------------------------------
SMALL_FUSION_ARGS = {
    "mcan": {"depth": 1, "num_heads": 2},
    "cross_modal_transformer": {"depth": 1, "num_heads": 2},
}


@pytest.mark.parametrize("fusion", list_fusions())
def test_vqa_small_with_every_fusion(fusion):
    text = {"name": "embedding", "dim": 32} if fusion == "hierarchical_coattention" else SMALL["text_encoder"]
    model = small_model({"name": fusion, **SMALL_FUSION_ARGS.get(fusion, {})}, text_encoder=text)
    image = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[3, 4, 5, 0], [9, 2, 0, 0]])
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    out, out_padded = model(image, ids), model(image, padded)
    assert out.logits.shape == (2, NUM_ANSWERS)
    assert model.head.net[1].in_features == model.fusion.output_dim
    torch.testing.assert_close(out_padded.logits, out.logits, atol=1e-5, rtol=1e-5)


def test_part_errors_say_what_is_valid():
    with pytest.raises(ValueError, match=r"fusion 'mfb' takes no argument\(s\) \['combine'\]") as info:
        small_model({"name": "mfb", "combine": "sum"})
    assert "factor" in str(info.value)  # lists what MFB takes
    with pytest.raises(ValueError, match=r"fusion 'mcan' takes no argument\(s\) \['image_context'\]"):
        small_model({"name": "mcan", "image_context": "gumbel"})
    with pytest.raises(ValueError, match="unknown fusion 'nope'"):
        small_model("nope")
    with pytest.raises(ValueError, match=r"fusion 'mcan': .*depth.*Expected a <class 'int'>"):
        small_model({"name": "mcan", "depth": "two"})
    with pytest.raises(
        ValueError, match=r"image_encoder 'timm' takes no argument\(s\) \['freeze_backbone'\]"
    ):
        small_model(image_encoder={"backbone": "resnet10t", "freeze_backbone": True})
    with pytest.raises(ValueError, match="unknown timm backbone 'resnet_nope'"):
        small_model(image_encoder={"backbone": "resnet_nope"})
    with pytest.raises(ValueError, match="unknown head 'linear'; valid: \\['mlp'\\]"):
        small_model(head={"name": "linear"})
