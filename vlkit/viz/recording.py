"""What a model attended to, recorded with forward hooks: :func:`record_attention` keeps what a
model's image encoder and fusion returned, :class:`AttentionRecorder` reads one example out of it
as :class:`AttentionMaps`, and :func:`token_labels` names the tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import nn

from vlkit.viz.figures import MATRIX_TITLES


class AttentionMaps(NamedTuple):
    """The attention of one example, as a model's image encoder and fusion returned it.

    Attributes:
        image_weights: ``(n,)`` attention over image regions (``FusionOutput.image_weights``),
            or None if the fusion has none.
        text_weights: ``(l,)`` attention over the tokens (``FusionOutput.text_weights``), or None.
        grid_size: ``(h, w)`` of the region grid (``ImageEncoderOutput.grid_size``), or None.
        matrix: ``(l, n)`` a words × regions map from ``FusionOutput.maps`` (the co-attention
            affinity ``C``, or cross-modal attention with heads averaged), or None.
        matrix_name: the key of ``matrix`` in ``maps`` (one of :data:`MATRIX_TITLES`), or None.
        theta: ``(2, 3)`` the spatial transformer's θ (``ImageEncoderOutput.theta``), or None.
    """

    image_weights: torch.Tensor | None = None
    text_weights: torch.Tensor | None = None
    grid_size: tuple[int, int] | None = None
    matrix: torch.Tensor | None = None
    matrix_name: str | None = None
    theta: torch.Tensor | None = None

    @property
    def has_attention(self) -> bool:
        """Whether the fusion returned any attention: region or token weights, or a matrix."""
        return any(x is not None for x in (self.image_weights, self.text_weights, self.matrix))


class AttentionRecorder:
    """The outputs of a model's ``image_encoder`` and ``fusion`` in the last forward pass.

    Filled by :func:`record_attention`; :meth:`maps` reads one example out of them.

    Attributes:
        image_output: what ``model.image_encoder`` returned (e.g. ``ImageEncoderOutput``), or None.
        fusion_output: what ``model.fusion`` returned (a ``FusionOutput``), or None.
        fusion_name: the class name of ``model.fusion``, or None without one.
    """

    def __init__(self) -> None:
        self.image_output: Any = None
        self.fusion_output: Any = None
        self.fusion_name: str | None = None  # the recorded fusion module's class name

    def maps(self, index: int = 0) -> AttentionMaps:
        """The attention of example ``index`` of the recorded batch (tensors detached, on CPU).

        The matrix is the first of :data:`MATRIX_TITLES` found in ``FusionOutput.maps``:
        ``"affinity_scores"`` (the co-attention affinity before its tanh), ``"affinity"`` and
        ``"text_to_image"`` ``(b, [heads,] l, n)`` as they are,
        ``"image_to_text"`` ``(b, [heads,] n, l)`` transposed; heads are averaged.

        Raises:
            RuntimeError: the fusion has not run since recording began.
        """
        fused = self.fusion_output
        if fused is None:
            raise RuntimeError(
                "no fusion output was recorded: run the model inside `with record_attention(model) as rec:`"
            )

        def pick(value: Any) -> torch.Tensor | None:
            return None if value is None else value[index].detach().to("cpu", torch.float32)

        matrix = name = None
        maps = getattr(fused, "maps", None) or {}
        for key in MATRIX_TITLES:
            if maps.get(key) is not None:
                matrix, name = pick(maps[key]), key
                matrix = matrix.mean(0) if matrix.dim() == 3 else matrix  # heads averaged
                matrix = matrix.transpose(0, 1) if key == "image_to_text" else matrix  # (l, n)
                break
        encoded = self.image_output
        grid = getattr(encoded, "grid_size", None)
        return AttentionMaps(
            image_weights=pick(getattr(fused, "image_weights", None)),
            text_weights=pick(getattr(fused, "text_weights", None)),
            grid_size=None if grid is None else (int(grid[0]), int(grid[1])),
            matrix=matrix,
            matrix_name=name,
            theta=pick(getattr(encoded, "theta", None)),
        )


@contextmanager
def record_attention(model: nn.Module) -> Iterator[AttentionRecorder]:
    """Keep what ``model.image_encoder`` and ``model.fusion`` return while the block runs.

    Forward hooks only: the model computes exactly what it computes without them, and the hooks
    are removed when the block ends. Works with :class:`vlkit.models.VQAModel`,
    :class:`vlkit.models.SentimentModel` and any module with a ``fusion`` (and optionally an
    ``image_encoder``) sub-module::

        with record_attention(model) as recorded:
            output = model(image, question_ids, question_mask)
        attention = recorded.maps(0)

    Args:
        model: the model whose parts to record.

    Yields:
        An :class:`AttentionRecorder`, filled by every forward pass inside the block.

    A model without a fusion (e.g. :class:`vlkit.models.CaptioningModel`) has its image encoder
    recorded only (the spatial transformer's θ); :meth:`AttentionRecorder.maps` needs a fusion.

    Raises:
        ValueError: ``model`` has neither a ``fusion`` nor an ``image_encoder`` sub-module.
    """
    fusion = getattr(model, "fusion", None)
    encoder = getattr(model, "image_encoder", None)
    if not isinstance(fusion, nn.Module) and not isinstance(encoder, nn.Module):
        raise ValueError(  # noqa: TRY004 - a model of the wrong build, as the other user errors
            f"{type(model).__name__} has no `fusion` or `image_encoder` module to record; record_attention "
            "reads models built like VQAModel / SentimentModel (image_encoder, text_encoder, fusion, head)"
        )
    recorder = AttentionRecorder()
    recorder.fusion_name = type(fusion).__name__ if isinstance(fusion, nn.Module) else None

    def keep(field: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            setattr(recorder, field, output)

        return hook

    handles = [fusion.register_forward_hook(keep("fusion_output"))] if isinstance(fusion, nn.Module) else []
    if isinstance(encoder, nn.Module):
        handles.append(encoder.register_forward_hook(keep("image_output")))
    try:
        yield recorder
    finally:
        for handle in handles:
            handle.remove()


def token_labels(tokenizer: Any, text: str, ids: Sequence[int]) -> list[str]:
    """Readable labels of the token ids that ``tokenizer.encode(text)`` gave, one per id.

    - a :class:`vlkit.text.HFTokenizer`: its subword strings (``[CLS]``, ``lovely``, ``[SEP]``);
    - a :class:`vlkit.text.WordTokenizer`: the words of ``text`` as it splits them, a word out of
      the vocabulary marked ``word (unk)``;
    - anything else: ``tokenizer.decode([id])`` (or the id) per id.
    """
    ids = [int(i) for i in ids]
    backend = getattr(tokenizer, "tokenizer", None)
    if backend is not None and hasattr(backend, "convert_ids_to_tokens"):
        return [str(token) for token in backend.convert_ids_to_tokens(ids)]
    if hasattr(tokenizer, "split") and hasattr(tokenizer, "unk_id"):
        words = tokenizer.split(text, getattr(tokenizer, "lowercase", True))[: len(ids)]
        if len(words) == len(ids):
            return [f"{word} (unk)" if i == tokenizer.unk_id else word for word, i in zip(words, ids)]
    return [tokenizer.decode([i]) or str(i) for i in ids]
