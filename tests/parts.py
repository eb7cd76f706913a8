"""Small part configurations for the task tests: 32-wide regions and tokens from resnet10t's
stage 2 (stride 8) and a 16-wide word embedding, no dropout."""

from __future__ import annotations

IMAGE = {"backbone": "resnet10t", "feature_index": 2, "dim": 32}
TEXT = {"name": "lstm", "dim": 32, "embed_dim": 16}
HEAD = {"hidden_dim": 32, "dropout": 0.0}

#: VQATask / SentimentTask arguments: parallel co-attention joined by product (the main recipe's fusion)
VQA_PARTS = {
    "image_encoder": IMAGE,
    "text_encoder": TEXT,
    "fusion": {"name": "parallel_coattention", "combine": "product", "hidden_dim": 32, "dropout": 0.0},
    "head": HEAD,
}
SENTIMENT_PARTS = {**VQA_PARTS, "fusion": {"name": "cross_modal_attention", "hidden_dim": 32, "dropout": 0.0}}
#: CaptioningTask arguments: Show, Attend and Tell
CAPTION_PARTS = {
    "image_encoder": IMAGE,
    "decoder": {
        "name": "show_attend_tell",
        "embed_dim": 16,
        "hidden_dim": 32,
        "attention_dim": 16,
        "dropout": 0.0,
    },
}


def with_fusion(parts: dict, **fusion) -> dict:
    """``parts`` with the fusion's arguments changed (``name`` too)."""
    return {**parts, "fusion": {**parts["fusion"], **fusion}}
