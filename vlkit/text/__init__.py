"""Text modules: tokenisation and encoders that take token ids ``(b, l)``."""

from vlkit.text.common import TextEncoderOutput, check_token_ids
from vlkit.text.embedding import WordEmbeddingEncoder
from vlkit.text.factory import TEXT_ENCODERS, create_text_encoder
from vlkit.text.lstm import LSTMTextEncoder, packed_lstm
from vlkit.text.tokenizer import PAD_TOKEN, UNK_TOKEN, WordTokenizer
from vlkit.text.transformer import POSITION_ENCODINGS, TransformerTextEncoder

__all__ = [
    "PAD_TOKEN",
    "POSITION_ENCODINGS",
    "TEXT_ENCODERS",
    "UNK_TOKEN",
    "LSTMTextEncoder",
    "TextEncoderOutput",
    "TransformerTextEncoder",
    "WordEmbeddingEncoder",
    "WordTokenizer",
    "check_token_ids",
    "create_text_encoder",
    "packed_lstm",
]
