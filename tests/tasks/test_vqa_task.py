"""VQATask: loss selection, optimiser schedule, a short fit that learns."""

from __future__ import annotations

import itertools

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from tests.parts import VQA_PARTS, with_fusion
from vlkit.data import Preprocessing, VQABatch, VQADataModule
from vlkit.tasks import Optimization, VQATask

VOCAB = ["<pad>", "<unk>", "what", "color"]


def tiny_dm(data, batch_size: int, augment: bool = True) -> VQADataModule:
    """The tiny single-answer dataset with its column names, 32-pixel images."""
    return VQADataModule(
        data,
        image_column="img",
        question_column="q",
        answer_column="answers",
        batch_size=batch_size,
        image_size=32,
        augment=augment,
    )


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A CPU trainer with no logger, checkpoints, progress bar or summary."""
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def _batch(multi: bool) -> VQABatch:
    scores = torch.tensor([[1.0, 2 / 3, 0.0], [0.0, 0.0, 1.0]])
    return VQABatch(
        torch.zeros(2, 3, 32, 32),
        torch.tensor([[2, 3], [2, 0]]),
        torch.tensor([[1, 1], [1, 0]]).bool(),
        torch.tensor([0, 2]),
        scores,
        scores,
        multi,
        0,
    )


def test_loss_is_cross_entropy_for_one_answer_and_soft_bce_for_several():
    task = VQATask(**VQA_PARTS, vocabulary=VOCAB, answers=["a", "b", "c"])
    logits = torch.randn(2, 3)
    single, multi = _batch(False), _batch(True)
    assert task.loss(logits, single).item() == pytest.approx(F.cross_entropy(logits, single.label).item())
    expected = F.binary_cross_entropy_with_logits(logits, multi.scores, reduction="none").sum(1).mean()
    assert task.loss(logits, multi).item() == pytest.approx(expected.item())


def test_task_rejects_unknown_parts_and_missing_vocabularies():
    with pytest.raises(ValueError, match=r"unknown fusion 'nope'; valid: \["):
        VQATask(**with_fusion(VQA_PARTS, name="nope"), vocabulary=VOCAB, answers=["a"])
    with pytest.raises(ValueError, match="vocabulary"):
        VQATask(vocabulary=None, answers=["a"])
    with pytest.raises(ValueError, match="word vocabulary: use a word-level text encoder"):
        VQATask(**{**VQA_PARTS, "text_encoder": "hf"}, vocabulary=VOCAB, answers=["a"])


def test_predict_answers_a_batch_of_raw_images_and_questions(tmp_path):
    from PIL import Image

    task = VQATask(**VQA_PARTS, vocabulary=VOCAB, answers=["a", "b", "c"], preprocessing=Preprocessing(32))
    path = tmp_path / "red.png"
    Image.new("RGB", (40, 20), (200, 10, 10)).save(path)
    images = [path, Image.open(path), torch.rand(3, 50, 50), (torch.rand(3, 8, 8) * 255).to(torch.uint8)]
    questions = ["what color?", "What COLOR ?", "what is this blob", "color"]
    predictions = task.predict(images, questions, top_k=2, return_attention=True)
    assert len(predictions) == 4 and task.training  # the task's mode is restored
    first = predictions[0]
    assert len(first.answers) == 2 and (first.answer, first.score) == first.answers[0]
    assert {a for a, _ in first.answers} <= {"a", "b", "c"} and first.answers[0][1] >= first.answers[1][1]
    assert first.tokens == ["what", "color", "<unk>"] and first.unknown_words == ["?"]
    assert predictions[2].unknown_words == ["is", "this", "blob"]
    assert first.image_weights.shape == (16,) and first.grid_size == (4, 4)  # 32 px / stride 8
    assert first.text_weights.shape == (3,) and predictions[3].text_weights.shape == (1,)
    # the same image as a path and as a PIL image, the same words in another case: the same answers
    assert predictions[1].answers == pytest.approx(first.answers)
    # a batch gives what one call per image gives
    alone = task.predict(images[2], questions[2])[0]
    assert alone.answer == predictions[2].answer and alone.score == pytest.approx(
        predictions[2].score, abs=1e-5
    )
    assert alone.image_weights is None  # attention only on request


def test_predict_refuses_what_it_cannot_answer():
    image = torch.rand(3, 32, 32)
    task = VQATask(**VQA_PARTS, vocabulary=VOCAB, answers=["a", "b"])
    with pytest.raises(ValueError, match="no preprocessing"):
        task.predict(image, "what color?")
    task = VQATask(**VQA_PARTS, vocabulary=VOCAB, answers=["a", "b"], preprocessing={"image_size": 32})
    with pytest.raises(ValueError, match=r"got 2 image\(s\) and 1 question"):
        task.predict([image, image], ["what color?"])
    with pytest.raises(ValueError, match="non-empty string"):
        task.predict(image, "  ")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        task.predict("nope.png", "what color?")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        task.predict(image * 255, "what color?")
    with pytest.raises(ValueError, match="top_k"):
        task.predict(image, "what color?", top_k=0)


def test_warmup_then_cosine_schedule(tiny_vqa, tmp_path):
    dm = tiny_dm(tiny_vqa, batch_size=4)
    task = VQATask(
        **VQA_PARTS,
        vocabulary=dm.vocabulary,
        answers=dm.answers,
        optimization=Optimization(lr=0.01, warmup_fraction=0.25, min_lr_ratio=0.1),
    )
    lrs = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = quiet_trainer(
        max_epochs=4, callbacks=[Record()], limit_val_batches=0, default_root_dir=tmp_path
    )
    trainer.fit(task, dm)
    total = len(lrs)  # 24 rows / 4 = 6 steps per epoch
    warmup = int(total * 0.25)
    assert total == 24 and lrs[0] == pytest.approx(0.01 * 1e-3)
    assert max(lrs) == pytest.approx(0.01, rel=1e-6) and lrs.index(max(lrs)) == warmup
    assert all(a < b for a, b in itertools.pairwise(lrs[: warmup + 1]))  # rising during warm-up
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1 :]))  # then falling
    assert lrs[-1] > 0.01 * 0.1


def test_short_fit_learns_the_tiny_dataset(tiny_vqa, tmp_path):
    pl.seed_everything(0)
    dm = tiny_dm(tiny_vqa, batch_size=8, augment=False)
    task = VQATask(
        **VQA_PARTS,
        vocabulary=dm.vocabulary,
        answers=dm.answers,
        optimization={"lr": 3e-3, "warmup_fraction": 0.0},
    )
    trainer = quiet_trainer(max_epochs=25, default_root_dir=tmp_path)
    first = trainer.validate(task, dm, verbose=False)[0]["val/loss"]
    trainer.fit(task, dm)
    after = trainer.validate(task, dm.train_dataloader(), verbose=False)[0]
    assert after["val/loss"] < first
    assert after["val/vqa_acc"] >= 0.9  # memorises 24 training questions


def test_warmup_cosine_factor_by_hand():
    from vlkit.tasks import warmup_cosine

    assert warmup_cosine(0, warmup=10, total=110, min_ratio=0.1) == pytest.approx(1e-3)
    assert warmup_cosine(5, warmup=10, total=110, min_ratio=0.1) == pytest.approx(1e-3 + (1 - 1e-3) * 0.5)
    assert warmup_cosine(10, warmup=10, total=110, min_ratio=0.1) == pytest.approx(1.0)
    # halfway through the decay: cos(π/2) = 0 → min + (1 - min) / 2
    assert warmup_cosine(60, warmup=10, total=110, min_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert warmup_cosine(110, warmup=10, total=110, min_ratio=0.1) == pytest.approx(0.1)


def test_backbone_trains_at_a_fraction_of_the_learning_rate(tiny_vqa, tmp_path):
    dm = tiny_dm(tiny_vqa, batch_size=8)
    task = VQATask(
        **VQA_PARTS,
        vocabulary=dm.vocabulary,
        answers=dm.answers,
        optimization=Optimization(lr=0.01, backbone_lr_ratio=0.1),
    )
    trainer = quiet_trainer(max_steps=1, default_root_dir=tmp_path)
    trainer.fit(task, dm)
    backbone = {id(p) for p in task.model.image_encoder.backbone.parameters()}
    groups = trainer.optimizers[0].param_groups
    seen = set()
    for group in groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= backbone or not ids & backbone  # a group is all backbone or none of it
        assert group["initial_lr"] == pytest.approx(0.001 if ids <= backbone else 0.01)
        assert group["weight_decay"] == (0.0 if all(p.dim() < 2 for p in group["params"]) else 0.01)
        seen |= ids
    assert seen == {id(p) for p in task.parameters()}  # every parameter is optimised exactly once
    with pytest.raises(ValueError, match="0 <= backbone_lr_ratio <= 1"):
        VQATask(vocabulary=VOCAB, answers=["a"], optimization={"backbone_lr_ratio": 2.0})


def fit_recording(tiny_vqa, tmp_path, encoder_args, optimization, record):
    """Fit a tiny VQA task whose image encoder takes ``encoder_args``, calling ``record(task,
    param_groups)`` before every training step; returns the task and the trainer."""
    pl.seed_everything(0)
    dm = tiny_dm(tiny_vqa, batch_size=4)
    task = VQATask(
        **{**VQA_PARTS, "image_encoder": {**VQA_PARTS["image_encoder"], **encoder_args}},
        vocabulary=dm.vocabulary,
        answers=dm.answers,
        optimization=optimization,
    )

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            record(task, trainer.optimizers[0].param_groups)

    trainer = quiet_trainer(
        max_epochs=4, callbacks=[Record()], limit_val_batches=0, default_root_dir=tmp_path
    )
    trainer.fit(task, dm)
    return task, trainer


def test_localisation_networks_can_start_late(tiny_vqa, tmp_path):
    """localization_start_fraction: the spatial transformer's groups stay at rate 0 (θ at the
    identity) for that share of the steps, then warm up; everything else keeps the usual schedule."""
    rows, thetas = [], []

    def record(task, groups):
        rows.append([(g["start_fraction"] > 0, g["lr"]) for g in groups])
        thetas.append(task.model.image_encoder.input_stn.regressor[-1].bias.detach().clone())

    optimization = Optimization(lr=0.01, warmup_fraction=0.25, localization_start_fraction=0.5)
    task, trainer = fit_recording(tiny_vqa, tmp_path, {"stn": "input"}, optimization, record)
    stn = task.model.image_encoder.input_stn
    stn_ids = {id(p) for p in stn.parameters()}
    groups = trainer.optimizers[0].param_groups
    assert all(({id(p) for p in g["params"]} <= stn_ids) == (g["start_fraction"] == 0.5) for g in groups)
    total, start = len(rows), int(len(rows) * 0.5)  # 24 steps, the STN from step 12
    late = [max(lr for located, lr in row if located) for row in rows]
    main = [max(lr for located, lr in row if not located) for row in rows]
    assert total == 24 and late[:start] == [0.0] * start and all(lr > 0 for lr in late[start:])
    assert main[0] > 0 and max(main) == pytest.approx(0.01, rel=1e-6)
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert all(torch.equal(theta, identity) for theta in thetas[: start + 1])  # untouched until it starts
    assert not torch.equal(stn.regressor[-1].bias.detach(), identity)
    with pytest.raises(ValueError, match="0 <= localization_start_fraction < 1"):
        Optimization(localization_start_fraction=1.0)


def test_cbam_blocks_can_start_late(tiny_vqa, tmp_path):
    """attention_start_fraction: a zero-gated CBAM block keeps its gate at 0 (the encoder's output
    unchanged) for that share of the steps, then trains; the rest keeps the usual schedule."""
    gates, late_rates = [], []

    def record(task, groups):
        late_rates.append(max(g["lr"] for g in groups if g["start_fraction"] > 0))
        gates.append(task.model.image_encoder.output_cbam.gate.item())

    optimization = Optimization(lr=0.01, warmup_fraction=0.25, attention_start_fraction=0.5)
    task, trainer = fit_recording(tiny_vqa, tmp_path, {"cbam": "output"}, optimization, record)
    cbam = task.model.image_encoder.output_cbam
    cbam_ids = {id(p) for p in cbam.parameters()}
    groups = trainer.optimizers[0].param_groups
    assert all(({id(p) for p in g["params"]} <= cbam_ids) == (g["start_fraction"] == 0.5) for g in groups)
    start = len(gates) // 2
    assert late_rates[:start] == [0.0] * start and all(lr > 0 for lr in late_rates[start:])
    assert gates[: start + 1] == [0.0] * (start + 1) and cbam.gate.item() != 0.0
    with pytest.raises(ValueError, match="0 <= attention_start_fraction < 1"):
        Optimization(attention_start_fraction=-0.1)


def test_reinforce_hard_attention_adds_the_policy_loss(tiny_vqa):
    from vlkit.attention import HardContext

    torch.manual_seed(0)
    dm = tiny_dm(tiny_vqa, batch_size=8, augment=False)
    dm.setup("fit")
    task = VQATask(
        **with_fusion(VQA_PARTS, name="alternating_coattention", image_context="reinforce"),
        vocabulary=dm.vocabulary,
        answers=dm.answers,
    ).train()
    batch = next(iter(dm.train_dataloader()))
    logged = {}
    task.log = lambda name, value, **kw: logged.update({name: value})
    hard = next(m for m in task.modules() if isinstance(m, HardContext))
    total = task.training_step(batch, 0)
    assert "train/policy_loss" in logged
    torch.testing.assert_close(total, logged["train/loss"] + logged["train/policy_loss"])
    assert hard._pending is None and bool(hard.baseline_ready)
    total.backward()
    score = task.model.fusion.attend_image.score.weight  # only the policy loss reaches it
    assert score.grad is not None and score.grad.abs().sum() > 0


def test_sample_losses_per_sample_and_ignored_labels():
    task = VQATask(**VQA_PARTS, vocabulary=VOCAB, answers=["a", "b", "c"])
    logits = torch.randn(2, 3)
    batch = _batch(False)._replace(label=torch.tensor([0, -100]))
    per_sample, loss = task.sample_losses(logits, batch)
    assert per_sample[1] == 0
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.label, ignore_index=-100))
