"""A trained task's network as a graph that runs without vlkit: ``torch.export`` and ONNX.

The graph takes the tensors that the task's ``predict`` prepares and returns the raw scores:

- VQA: ``(image (b, 3, S, S) float32, token_ids (b, l) int64, token_mask (b, l) bool) → logits
  (b, answers)`` (softmax, or a sigmoid per answer for multi-answer data, as ``predict`` does);
- sentiment: the same → ``logits (b, classes)`` (an image-only model takes ``image`` alone, a
  text-only one ``token_ids, token_mask``);
- captioning: ``image → tokens (b, max_length) int64, log_probs (b,), lengths (b,) int64``, the
  greedy caption (``max_length`` steps; ``pad_id`` after ``<eos>``). Beam search stays in Python.

``image`` is resized to ``S = preprocessing.image_size`` and normalised with the saved mean and
std; token ids come from the saved tokenizer (the export folder holds both), right-padded with
0 (``token_mask`` False) to ``l = preprocessing.max_text_length`` (:data:`DEFAULT_TEXT_LENGTH`
when none was saved): an LSTM runs step by step, so the graph has one text length. The batch
size is dynamic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vlkit.tasks.checkpoint import default_file_mode

__all__ = [
    "DEFAULT_TEXT_LENGTH",
    "GRAPH_FORMATS",
    "export_graph",
    "graph_difference",
    "graph_inputs",
    "graph_module",
    "text_length",
]

#: The graph's text length when the task saved no ``max_text_length``.
DEFAULT_TEXT_LENGTH = 32

#: ``vlkit export --format`` choices besides the default ``pytorch`` (save_pretrained), and the
#: file each writes in the export folder.
GRAPH_FORMATS = {"torch.export": "model.pt2", "onnx": "model.onnx"}


class _Scores(nn.Module):
    """VQA / sentiment: logits from the image and the text."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, token_ids: Tensor, token_mask: Tensor) -> Tensor:
        return self.model(image, token_ids, token_mask).logits


class _ImageScores(_Scores):
    """An image-only sentiment model: logits from the image (the text is not read)."""

    def forward(self, image: Tensor) -> Tensor:  # type: ignore[override]
        ids = torch.zeros(image.shape[0], 1, dtype=torch.long, device=image.device)
        return self.model(image, ids, ids >= 0).logits


class _TextScores(_Scores):
    """A text-only sentiment model: logits from the text (the image is not read)."""

    def forward(self, token_ids: Tensor, token_mask: Tensor) -> Tensor:  # type: ignore[override]
        return self.model(
            torch.zeros(token_ids.shape[0], 3, 1, 1, device=token_ids.device), token_ids, token_mask
        ).logits


class _GreedyCaptions(nn.Module):
    """Captioning: the greedy caption in ``max_length`` steps."""

    def __init__(self, model: nn.Module, max_length: int) -> None:
        super().__init__()
        self.model, self.max_length = model, max_length

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model.generate(image, max_length=self.max_length, beam_size=1)
        return out.tokens, out.log_probs, out.lengths


def graph_module(task: Any) -> tuple[nn.Module, list[str], list[str]]:
    """The network of ``task`` as a module of tensors only, with its input and output names.

    Raises:
        ValueError: a task without a graph form.
    """
    model = task.model
    if task.task_name == "captioning":
        return (
            _GreedyCaptions(model, int(task.hparams.max_length)),
            ["image"],
            ["tokens", "log_probs", "lengths"],
        )
    if task.task_name not in ("vqa", "sentiment"):
        raise ValueError(f"no graph export for the {task.task_name!r} task")
    reads_image = getattr(model, "image_encoder", None) is not None
    reads_text = getattr(model, "text_encoder", None) is not None
    if reads_image and reads_text:
        return _Scores(model), ["image", "token_ids", "token_mask"], ["logits"]
    if reads_image:
        return _ImageScores(model), ["image"], ["logits"]
    return _TextScores(model), ["token_ids", "token_mask"], ["logits"]


def text_length(task: Any) -> int:
    """The text length ``l`` of the graph: the saved ``max_text_length``, else :data:`DEFAULT_TEXT_LENGTH`."""
    preprocessing = getattr(task, "preprocessing", None)
    return getattr(preprocessing, "max_text_length", None) or DEFAULT_TEXT_LENGTH


def graph_inputs(task: Any, batch: int = 2) -> tuple[Tensor, ...]:
    """Example inputs of :func:`graph_module`: random pixels and valid token ids of length
    :func:`text_length`, each row's text one token shorter than the one before (at least one)."""
    _, names, _ = graph_module(task)
    size, length = task.preprocessing.image_size, text_length(task)
    inputs = {"image": torch.rand(batch, 3, size, size)}
    vocab_size = getattr(getattr(task.model, "text_encoder", None), "vocab_size", None) or 2
    lengths = (length - torch.arange(batch)).clamp(min=1)
    inputs["token_mask"] = torch.arange(length)[None, :] < lengths[:, None]
    ids = torch.randint(1, max(vocab_size, 2), (batch, length))
    inputs["token_ids"] = ids.masked_fill(~inputs["token_mask"], 0)
    return tuple(inputs[name] for name in names)


def export_graph(task: Any, folder: str | Path, graph_format: str) -> Path:
    """Write ``task``'s network to ``folder`` as ``model.pt2`` (``torch.export``, read with
    ``torch.export.load``) or ``model.onnx`` (ONNX, opset of ``torch.onnx``; run with
    onnxruntime), with a dynamic batch size.

    Returns:
        The written file.

    Raises:
        ValueError: an unknown format, or a task without a graph form.
        ImportError: ONNX export without the ``onnx`` extra (``pip install "vlkit[onnx]"``).
    """
    if graph_format not in GRAPH_FORMATS:
        raise ValueError(f"unknown export format {graph_format!r}; choose from {['pytorch', *GRAPH_FORMATS]}")
    module, names, outputs = graph_module(task)
    module = module.eval()
    inputs = graph_inputs(task)
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = tuple({0: batch} for _ in names)
    path = Path(folder) / GRAPH_FORMATS[graph_format]
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if graph_format == "torch.export":
            program = torch.export.export(module, inputs, dynamic_shapes=dynamic)
            torch.export.save(program, str(path))
            os.chmod(path, default_file_mode())  # as the folder's other files
            return path
        try:
            import onnxscript  # noqa: F401 — torch.onnx's exporter needs it
        except ImportError as err:
            raise ImportError('ONNX export needs the onnx extra: pip install "vlkit[onnx]"') from err
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=names,
            output_names=outputs,
            dynamic_shapes=dynamic,
            dynamo=True,
            external_data=False,
        )
    os.chmod(path, default_file_mode())
    return path


def graph_difference(task: Any, path: str | Path, batch: int = 3) -> float:
    """The largest absolute difference between the outputs of the graph file ``path`` (from
    :func:`export_graph`) and of ``task`` in PyTorch, on :func:`graph_inputs` of ``batch`` rows
    (another batch size than the export's example, so the dynamic batch is checked too).

    Raises:
        ImportError: an ONNX file without onnxruntime (``pip install "vlkit[onnx]"``).
    """
    module, names, _ = graph_module(task)
    inputs = graph_inputs(task, batch)
    with torch.no_grad():
        expected = module.eval()(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    if Path(path).suffix == ".onnx":
        try:
            import onnxruntime
        except ImportError as err:
            raise ImportError('checking an ONNX graph needs onnxruntime: pip install "vlkit[onnx]"') from err
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = [torch.as_tensor(x) for x in session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})]
    else:
        with torch.no_grad():
            got = torch.export.load(str(path)).module()(*inputs)
        got = got if isinstance(got, tuple | list) else [got]
    return max(float((e.float() - g.float()).abs().max()) for e, g in zip(expected, got, strict=True))
