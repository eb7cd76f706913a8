"""The registered model presets (:func:`vlkit.models.create_model`): small models for a CPU.

Each is a model class and its part configurations; the image encoder of all of them is a
ResNet-10t read at stride 8 (stage 2), projected to 256 channels.
"""

from __future__ import annotations

from vlkit.models.captioning import CaptioningModel
from vlkit.models.registry import register_model
from vlkit.models.sentiment import SentimentModel
from vlkit.models.vqa import VQAModel

__all__: list[str] = []

_IMAGE = {"backbone": "resnet10t", "feature_index": 2, "dim": 256}
_TEXT = {"name": "lstm", "dim": 256, "embed_dim": 128}
_HEAD = {"hidden_dim": 256, "dropout": 0.1}

# parallel co-attention (Lu et al., NeurIPS 2016) over a biLSTM question encoder
register_model(
    "vqa_small",
    VQAModel,
    image_encoder=_IMAGE,
    text_encoder=_TEXT,
    fusion={"name": "parallel_coattention", "hidden_dim": 256, "dropout": 0.1},
    head=_HEAD,
)
# each region attends over the words (cross-modal attention), then a class MLP
register_model(
    "sentiment_small",
    SentimentModel,
    image_encoder=_IMAGE,
    text_encoder=_TEXT,
    fusion={"name": "cross_modal_attention", "hidden_dim": 256, "dropout": 0.1},
    head=_HEAD,
)
# Show, Attend and Tell (Xu et al., ICML 2015): LSTM with soft attention and the gate β
register_model("caption_sat_small", CaptioningModel, image_encoder=_IMAGE, decoder="show_attend_tell")
# a 2-block Transformer decoder with cross-attention to the regions (Vaswani et al., NeurIPS 2017)
register_model(
    "caption_transformer_small",
    CaptioningModel,
    image_encoder=_IMAGE,
    decoder={"name": "transformer", "dim": 256, "depth": 2, "num_heads": 4},
)
