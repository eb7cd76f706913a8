"""Text modules: tokenisation and encoders that take token ids ``(b, l)``."""

from vlkit.text.lstm import LSTMTextEncoder, TextEncoderOutput
from vlkit.text.tokenizer import PAD_TOKEN, UNK_TOKEN, WordTokenizer

__all__ = ["PAD_TOKEN", "UNK_TOKEN", "LSTMTextEncoder", "TextEncoderOutput", "WordTokenizer"]
