"""Text modules: tokenisation and encoders that take token ids ``(b, l)``."""

from vlkit.text.caption import (
    CaptionTokenizer,
    HFCaptionTokenizer,
    WordCaptionTokenizer,
    create_caption_tokenizer,
)
from vlkit.text.common import TextEncoderOutput, check_token_ids
from vlkit.text.embedding import WordEmbeddingEncoder
from vlkit.text.factory import TEXT_ENCODERS, TextEncoderConfig, create_text_encoder
from vlkit.text.hf import PACKAGED_TEXT_MODEL, HFTextEncoder, HFTokenizer, resolve_hf_model
from vlkit.text.lstm import LSTMTextEncoder, packed_lstm
from vlkit.text.tokenizer import BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, UNK_TOKEN, WordTokenizer
from vlkit.text.transformer import POSITION_ENCODINGS, TransformerTextEncoder

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "PACKAGED_TEXT_MODEL",
    "PAD_TOKEN",
    "POSITION_ENCODINGS",
    "TEXT_ENCODERS",
    "UNK_TOKEN",
    "CaptionTokenizer",
    "HFCaptionTokenizer",
    "HFTextEncoder",
    "HFTokenizer",
    "LSTMTextEncoder",
    "TextEncoderConfig",
    "TextEncoderOutput",
    "TransformerTextEncoder",
    "WordCaptionTokenizer",
    "WordEmbeddingEncoder",
    "WordTokenizer",
    "check_token_ids",
    "create_caption_tokenizer",
    "create_text_encoder",
    "packed_lstm",
    "resolve_hf_model",
]
