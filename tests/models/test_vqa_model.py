"""Tests for vlkit.models: the model registry, VQAHead and the assembled VQAModel."""

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
    register_model,
    registry,
)

SMALL = {"dim": 32, "hidden_dim": 16, "embed_dim": 8}
NUM_ANSWERS, VOCAB = 7, 20
EXPECTED_VQA = {"vqa_parallel_coattn_small", "vqa_alternating_coattn_small"}


def small_model(name, seed=0):
    torch.manual_seed(seed)
    return create_model(name, num_answers=NUM_ANSWERS, vocab_size=VOCAB, **SMALL).eval()


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------
def test_list_models_filters_by_pattern():
    vqa = list_models("vqa_*")
    assert EXPECTED_VQA <= set(vqa)
    assert all(name.startswith("vqa_") for name in vqa)
    assert vqa == sorted(vqa)
    assert list_models("*parallel*") == [n for n in list_models() if "parallel" in n]
    assert "vqa_parallel_coattn_small" in list_models("*parallel*")
    assert "vqa_alternating_coattn_small" not in list_models("*parallel*")
    assert list_models("vqa_alternating_coattn_small") == ["vqa_alternating_coattn_small"]
    assert list_models("no_such_prefix_*") == []
    assert set(vqa) <= set(list_models())


def test_create_unknown_model_lists_registered_names():
    with pytest.raises(ValueError, match="nope") as info:
        create_model("nope")
    for name in list_models():
        assert name in str(info.value)


def test_register_model_and_duplicate(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # keep the global registry clean

    def tiny_linear(out_features: int = 3) -> nn.Module:
        return nn.Linear(2, out_features)

    assert register_model(tiny_linear) is tiny_linear  # usable as a decorator
    assert list_models("tiny_*") == ["tiny_linear"]
    model = create_model("tiny_linear", out_features=5)
    assert isinstance(model, nn.Linear) and model.out_features == 5

    def tiny_linear():  # a second builder with the same name, on purpose
        return nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_model(tiny_linear)
    assert isinstance(create_model("tiny_linear"), nn.Linear)  # the first one is kept


def test_registering_an_existing_builtin_name_raises(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    def vqa_parallel_coattn_small():
        return nn.Identity()

    with pytest.raises(ValueError, match="vqa_parallel_coattn_small"):
        register_model(vqa_parallel_coattn_small)


# --------------------------------------------------------------------------------------
# registered VQA models
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED_VQA))
def test_registered_vqa_models_give_logits_and_weights(name):
    assert name in list_models("vqa_*")
    model = small_model(name)
    assert isinstance(model, VQAModel)
    image = torch.randn(2, 3, 64, 64)
    ids = torch.tensor([[3, 4, 5, 6, 0], [7, 8, 0, 0, 0]])
    out = model(image, ids)
    assert isinstance(out, VQAOutput)
    assert out.logits.shape == (2, NUM_ANSWERS)
    assert out.image_weights.shape == (2, 64)  # resnet10t stage 2: 64 / 8 = 8 → 8 · 8 regions
    assert out.text_weights.shape == (2, 5)
    assert torch.isfinite(out.logits).all()
    torch.testing.assert_close(out.image_weights.sum(-1), torch.ones(2))
    torch.testing.assert_close(out.text_weights.sum(-1), torch.ones(2))
    assert (out.text_weights[ids == 0] == 0).all()


def test_every_registered_vqa_model_builds_with_small_overrides():
    names = list_models("vqa_*")
    assert names
    image, ids = torch.randn(1, 3, 32, 32), torch.tensor([[2, 3, 0]])
    for name in names:
        out = small_model(name)(image, ids)
        assert out.logits.shape == (1, NUM_ANSWERS), name
        assert out.text_weights.shape == (1, 3), name


@pytest.mark.parametrize("name", sorted(EXPECTED_VQA))
def test_trailing_padding_does_not_change_logits(name):
    model = small_model(name, seed=3)
    image = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[3, 4, 5, 0], [9, 2, 0, 0]])
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], dim=1)  # 3 extra pads
    out, out_padded = model(image, ids), model(image, padded)
    torch.testing.assert_close(out_padded.logits, out.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_padded.image_weights, out.image_weights, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out_padded.text_weights[:, :4], out.text_weights, atol=1e-6, rtol=1e-6)
    assert (out_padded.text_weights[:, 4:] == 0).all()


@pytest.mark.parametrize("name", sorted(EXPECTED_VQA))
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, num_answers=NUM_ANSWERS, vocab_size=VOCAB, dropout=0.0, **SMALL)
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


@pytest.mark.parametrize("combine, width", [("concat", 64), ("product", 32), ("sum", 32)])
def test_builder_combine_sets_head_width(combine, width):
    fusion = {"name": "parallel_coattention", "combine": combine}
    model = create_model(
        "vqa_small", num_answers=NUM_ANSWERS, vocab_size=VOCAB, fusion=fusion, **SMALL
    ).eval()
    assert model.fusion.combine == combine and model.fusion.output_dim == width
    preset = create_model(
        "vqa_parallel_coattn_small", num_answers=NUM_ANSWERS, vocab_size=VOCAB, combine=combine, **SMALL
    )
    assert preset.fusion.combine == combine and preset.fusion.output_dim == width
    assert model.head.net[1].in_features == width
    assert model(torch.randn(2, 3, 32, 32), torch.tensor([[3, 4], [5, 0]])).logits.shape == (2, NUM_ANSWERS)


# --------------------------------------------------------------------------------------
# VQAHead
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


def test_builder_options_reach_the_image_encoder(tmp_path, monkeypatch):
    import timm

    monkeypatch.setenv("VLKIT_CACHE", str(tmp_path))
    model = create_model(
        "vqa_parallel_coattn_small",
        num_answers=3,
        vocab_size=5,
        backbone="efficientnet_lite0",
        feature_index=3,
        packaged_weights=True,
        freeze_backbone=True,
        dim=16,
        hidden_dim=8,
    )
    encoder = model.image_encoder
    assert encoder.freeze and not any(p.requires_grad for p in encoder.backbone.parameters())
    from vlkit.vision import packaged_weights_file

    state = torch.load(packaged_weights_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert torch.equal(encoder.backbone.state_dict()["conv_stem.weight"], state["conv_stem.weight"])
    fresh = timm.create_model("efficientnet_lite0", features_only=True, out_indices=(3,))
    assert not torch.equal(fresh.state_dict()["conv_stem.weight"], state["conv_stem.weight"])


# --------------------------------------------------------------------------------------
# builder options from the attention library: Transformer question encoder, hard attention
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED_VQA))
def test_builder_with_transformer_text_encoder(name):
    from vlkit.text import TransformerTextEncoder

    torch.manual_seed(0)
    model = create_model(
        name,
        num_answers=NUM_ANSWERS,
        vocab_size=VOCAB,
        text_encoder="transformer",
        text_depth=3,
        text_heads=2,
        text_positions="learned",
        **SMALL,
    ).eval()
    assert isinstance(model.text_encoder, TransformerTextEncoder) and len(model.text_encoder.blocks) == 3
    ids = torch.tensor([[3, 4, 5, 0], [9, 2, 0, 0]])
    image = torch.randn(2, 3, 32, 32)
    out = model(image, ids)
    padded = model(image, torch.cat([ids, torch.zeros(2, 2, dtype=torch.long)], 1))
    torch.testing.assert_close(padded.logits, out.logits, atol=1e-5, rtol=1e-5)
    assert (out.text_weights[ids == 0] == 0).all()


def test_builder_rejects_unknown_text_encoder():
    with pytest.raises(ValueError, match="lstm"):
        create_model("vqa_parallel_coattn_small", num_answers=3, vocab_size=VOCAB, text_encoder="gru")


@pytest.mark.parametrize("name", sorted(EXPECTED_VQA))
@pytest.mark.parametrize("estimator", ["gumbel", "reinforce"])
def test_builder_with_hard_attention_picks_one_region(name, estimator):
    from vlkit.attention import HardContext

    torch.manual_seed(0)
    model = create_model(name, num_answers=NUM_ANSWERS, vocab_size=VOCAB, hard_attention=estimator, **SMALL)
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
    torch.manual_seed(0)
    model = create_model(
        "vqa_alternating_coattn_small",
        num_answers=NUM_ANSWERS,
        vocab_size=VOCAB,
        hard_attention="gumbel",
        **SMALL,
    ).train()
    out = model(torch.randn(2, 3, 32, 32), torch.tensor([[3, 4, 5, 0], [9, 2, 0, 0]]))
    out.logits.pow(2).sum().backward()
    for name, p in model.fusion.attend_image.named_parameters():
        if "context" not in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_builder_passes_cbam_stn_and_partial_freeze_to_the_image_encoder():
    from vlkit.vision import CBAM, SpatialTransformer

    model = create_model(
        "vqa_parallel_coattn_small",
        num_answers=NUM_ANSWERS,
        vocab_size=VOCAB,
        cbam="stages",
        stn="input",
        freeze_backbone=1,
        **SMALL,
    )
    encoder = model.image_encoder
    assert sum(isinstance(m, CBAM) for m in encoder.modules()) == 3
    assert isinstance(encoder.input_stn, SpatialTransformer) and encoder.freeze == 1
    out = model(torch.randn(2, 3, 32, 32), torch.tensor([[3, 4, 0], [5, 0, 0]]))
    out.logits.sum().backward()
    assert encoder.input_stn.regressor[-1].weight.grad is not None


# --------------------------------------------------------------------------------------
# vqa_small with every fusion of the registry
# --------------------------------------------------------------------------------------
SMALL_FUSION_ARGS = {
    "mcan": {"depth": 1, "num_heads": 2},
    "cross_modal_transformer": {"depth": 1, "num_heads": 2},
}


@pytest.mark.parametrize("fusion", list_fusions())
def test_vqa_small_with_every_fusion(fusion):  # a string, or a mapping with the layer's arguments
    torch.manual_seed(0)
    model = create_model(
        "vqa_small",
        num_answers=NUM_ANSWERS,
        vocab_size=VOCAB,
        fusion={"name": fusion, **SMALL_FUSION_ARGS[fusion]} if fusion in SMALL_FUSION_ARGS else fusion,
        text_encoder="embedding" if fusion == "hierarchical_coattention" else "lstm",
        **SMALL,
    ).eval()
    image = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[3, 4, 5, 0], [9, 2, 0, 0]])
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    out, out_padded = model(image, ids), model(image, padded)
    assert out.logits.shape == (2, NUM_ANSWERS)
    assert model.head.net[1].in_features == model.fusion.output_dim
    torch.testing.assert_close(out_padded.logits, out.logits, atol=1e-5, rtol=1e-5)


def test_vqa_small_rejects_arguments_the_fusion_does_not_take():
    with pytest.raises(ValueError, match="combine") as info:
        create_model(
            "vqa_small", num_answers=3, vocab_size=5, fusion={"name": "mfb", "combine": "sum"}, **SMALL
        )
    assert "factor" in str(info.value)  # lists what MFB takes
    with pytest.raises(ValueError, match="image_context"):
        create_model(
            "vqa_small", num_answers=3, vocab_size=5, fusion="mcan", hard_attention="gumbel", **SMALL
        )
    with pytest.raises(ValueError, match="unknown fusion 'nope'"):
        create_model("vqa_small", num_answers=3, vocab_size=5, fusion="nope", **SMALL)
    with pytest.raises(ValueError, match="'name' key"):
        create_model("vqa_small", num_answers=3, vocab_size=5, fusion={"depth": 2}, **SMALL)
    with pytest.raises(ValueError, match="fixes fusion"):
        create_model("vqa_parallel_coattn_small", num_answers=3, vocab_size=5, fusion="mcan", **SMALL)
