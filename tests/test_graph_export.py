"""Exporting a task's network as a graph (torch.export, ONNX) whose outputs equal PyTorch's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.parts import CAPTION_PARTS, SENTIMENT_PARTS, VQA_PARTS
from vlkit.data.preprocessing import Preprocessing
from vlkit.tasks import CaptioningTask, SentimentTask, VQATask
from vlkit.tasks.graph_export import export_graph, graph_difference, graph_inputs, graph_module
from vlkit.text.lstm import packed_lstm, unpacked_lstm

VOCAB = ["<pad>", "<unk>", "what", "color", "is", "it", "shape"]
CAPTION_VOCAB = ["<pad>", "<unk>", "<bos>", "<eos>", "a", "red", "circle"]


@pytest.mark.parametrize(("layers", "bidirectional"), [(1, True), (2, True), (2, False)])
def test_the_unpacked_lstm_equals_the_packed_one(layers, bidirectional):
    torch.manual_seed(0)
    lstm = nn.LSTM(8, 6, num_layers=layers, bidirectional=bidirectional, batch_first=True).eval()
    x = torch.randn(5, 7, 8)
    lengths = torch.tensor([7, 3, 0, 5, 1])
    mask = torch.arange(7)[None] < lengths[:, None]
    expected = packed_lstm(lstm, x, mask)
    assert torch.allclose(unpacked_lstm(lstm, x, mask), expected, atol=1e-6)
    # the backward direction reads each sequence from its own end: reversing the whole padded row
    # instead (padding first) would change it
    if bidirectional:
        assert not torch.allclose(
            unpacked_lstm(lstm, x, torch.ones_like(mask)) * mask[..., None], expected, atol=1e-3
        )


def make(task_name: str, modality: str = "both"):
    torch.manual_seed(0)
    if task_name == "vqa":
        return VQATask(
            **VQA_PARTS,
            vocabulary=VOCAB,
            answers=["a", "b", "c"],
            preprocessing=Preprocessing(32, max_text_length=6),
        )
    if task_name == "sentiment":
        return SentimentTask(
            **SENTIMENT_PARTS,
            modality=modality,
            vocabulary=VOCAB,
            classes=["positive", "negative", "neutral"],
            preprocessing=Preprocessing(32, max_text_length=5),
        )
    return CaptioningTask(
        **CAPTION_PARTS, vocabulary=CAPTION_VOCAB, max_length=6, preprocessing=Preprocessing(32)
    )


CASES = [
    ("vqa", "both"),
    ("sentiment", "both"),
    ("sentiment", "image"),
    ("sentiment", "text"),
    ("captioning", "both"),
]


@pytest.mark.parametrize("graph_format", ["torch.export", "onnx"])
@pytest.mark.parametrize(("task_name", "modality"), CASES, ids=[f"{t}-{m}" for t, m in CASES])
def test_every_task_exports_a_graph_equal_to_pytorch(task_name, modality, graph_format, tmp_path):
    task = make(task_name, modality).eval()
    path = export_graph(task, tmp_path, graph_format)
    assert path.name == {"onnx": "model.onnx", "torch.export": "model.pt2"}[graph_format]
    assert graph_difference(task, path, batch=3) < 1e-4  # another batch size than the export's example


def test_the_exported_vqa_graph_answers_as_predict_does(tmp_path):
    import onnxruntime

    task = make("vqa").eval()
    path = export_graph(task, tmp_path, "onnx")
    images = torch.rand(2, 3, 40, 40)
    questions = ["what color is it", "what shape"]
    predictions = task.predict(images, questions, top_k=3)
    from vlkit.tasks.inference import image_batch

    ids, mask = task.encode_questions(questions)
    pad = 6 - ids.shape[1]
    ids, mask = nn.functional.pad(ids, (0, pad)), nn.functional.pad(mask, (0, pad))
    feeds = {
        "image": image_batch(images, task.preprocessing).numpy(),
        "token_ids": ids.numpy(),
        "token_mask": mask.numpy(),
    }
    (logits,) = onnxruntime.InferenceSession(str(path)).run(None, feeds)
    probs = torch.as_tensor(logits).softmax(-1)
    assert [task.answers[i] for i in probs.argmax(-1).tolist()] == [p.answer for p in predictions]
    assert probs.max(-1).values.tolist() == pytest.approx([p.score for p in predictions], abs=1e-5)


def test_graph_inputs_follow_the_saved_text_length():
    task = make("vqa")
    _, names, outputs = graph_module(task)
    image, ids, mask = graph_inputs(task, batch=4)
    assert names == ["image", "token_ids", "token_mask"] and outputs == ["logits"]
    assert image.shape == (4, 3, 32, 32) and ids.shape == mask.shape == (4, 6)
    assert mask.sum(1).tolist() == [6, 5, 4, 3] and bool((ids[~mask] == 0).all())
    with pytest.raises(
        ValueError, match=r"unknown export format 'tflite'; choose from \['pytorch', 'torch.export', 'onnx'\]"
    ):
        export_graph(task, "x", "tflite")
