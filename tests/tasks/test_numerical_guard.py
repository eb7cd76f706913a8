"""Numerical guard: a non-finite training loss stops training (or skips the step); NaN inputs are refused."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.parts import IMAGE, VQA_PARTS
from tests.tasks.test_vqa_task import quiet_trainer, tiny_dm
from vlkit.tasks import VQATask
from vlkit.vision import BackboneFeatures


def optimizer_steps(trainer) -> set[float]:
    """The step counts of AdamW's parameters: equal, and the number of updates, when none was skipped."""
    optimizer = trainer.optimizers[0]
    return {float(optimizer.state[p]["step"]) for g in optimizer.param_groups for p in g["params"]}


def task_with_nan_loss_at(dm, calls: set[int], **kwargs) -> VQATask:
    """A VQATask whose training loss is NaN at the given (0-based) training-step calls."""
    dm.setup("fit")
    task = VQATask(**VQA_PARTS, vocabulary=dm.vocabulary, answers=dm.answers, **kwargs)
    original, counter = task.sample_losses, iter(range(10**6))

    def sample_losses(logits, batch):
        per_sample, loss = original(logits, batch)
        if task.training and next(counter) in calls:
            return per_sample, loss * float("nan")
        return per_sample, loss

    task.sample_losses = sample_losses
    return task


def test_a_nan_loss_stops_training_naming_step_epoch_and_batch(tiny_vqa):
    dm = tiny_dm(tiny_vqa, batch_size=4, augment=False)
    task = task_with_nan_loss_at(dm, {8})  # 6 batches per epoch: epoch 1, batch 2
    with pytest.raises(
        FloatingPointError, match=r"global step 8 \(epoch 1, batch 2\).*on_nonfinite_loss: skip"
    ):
        quiet_trainer(max_epochs=2, num_sanity_val_steps=0).fit(task, datamodule=dm)


def test_skip_makes_no_update_and_counts_the_step(tiny_vqa, caplog):
    dm = tiny_dm(tiny_vqa, batch_size=4, augment=False)
    task = task_with_nan_loss_at(dm, {2, 4}, on_nonfinite_loss="skip")
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0)
    with caplog.at_level(logging.WARNING, logger="vlkit.tasks.base"):
        trainer.fit(task, datamodule=dm)
    steps = optimizer_steps(trainer)
    assert steps == {4.0}  # 6 batches, 2 updates skipped (no gradient: AdamW leaves the weights)
    assert trainer.callback_metrics["train/nonfinite_skipped"] == 2
    assert all(torch.isfinite(p).all() for p in task.parameters())
    assert sum("optimiser step skipped" in r.getMessage() for r in caplog.records) == 2
    assert "global step 2 (epoch 0, batch 2)" in caplog.text


def test_unknown_nonfinite_policy_is_rejected():
    with pytest.raises(ValueError, match="on_nonfinite_loss must be one of"):
        VQATask(**VQA_PARTS, vocabulary=["<pad>", "<unk>"], answers=["a"], on_nonfinite_loss="ignore")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_images_with_nan_or_inf_are_rejected_naming_the_samples(bad):
    task = VQATask(**VQA_PARTS, vocabulary=["<pad>", "<unk>", "what"], answers=["a", "b"])
    images = torch.zeros(3, 3, 32, 32)
    images[1, 0, 5, 5] = bad
    ids = torch.tensor([[2], [2], [2]])
    with pytest.raises(ValueError, match=r"images contain 1 NaN or infinite value\(s\) in sample\(s\) \[1\]"):
        task(images, ids)
    images[1, 0, 5, 5] = 0.0
    assert task(images, ids).logits.shape == (3, 2)  # the same batch, finite, goes through


def test_cached_features_with_nan_are_rejected():
    task = VQATask(
        **{**VQA_PARTS, "image_encoder": {**IMAGE, "freeze": True}},
        vocabulary=["<pad>", "<unk>", "what"],
        answers=["a", "b"],
    )
    features = task.model.image_encoder.backbone_features(torch.zeros(2, 3, 32, 32))
    features.feature_map[0].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=r"cached backbone features contain 1 NaN .* sample\(s\) \[0\]"):
        task(BackboneFeatures(features.feature_map), torch.tensor([[2], [2]]))


def test_skipped_unreadable_images_are_counted_and_reported_at_the_end_of_each_epoch(tiny_vqa, caplog):
    from tests.data.test_vqa_datamodule import _with_broken_image, make_dm

    data = _with_broken_image(_with_broken_image(tiny_vqa, "train", 3), "validation", 7)
    data = _with_broken_image(data, "train", 11)
    dm = make_dm(data, augment=False, on_bad_sample="skip")
    dm.setup("fit")
    task = VQATask(**VQA_PARTS, vocabulary=dm.vocabulary, answers=dm.answers)
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=0)
    with caplog.at_level(logging.WARNING, logger="vlkit.tasks.base"):
        trainer.fit(task, datamodule=dm)
    assert trainer.callback_metrics["train/skipped"] == 2 and trainer.callback_metrics["val/skipped"] == 1
    reports = [r.getMessage() for r in caplog.records if "skipped in this epoch" in r.getMessage()]
    tail = (
        "unreadable sample(s) skipped in this epoch (on_bad_sample=skip; the warnings above name their rows;"
    )
    assert reports == [
        f"{split}, epoch {epoch}: {count} {tail} logged as {split}/skipped)"
        for epoch in (0, 1)
        for split, count in (("val", 1), ("train", 2))
    ]


def test_a_batch_of_only_unreadable_images_is_counted_and_training_goes_on(tiny_vqa):
    from tests.data.test_vqa_datamodule import _with_broken_image, make_dm

    data = _with_broken_image(tiny_vqa, "train", 3)
    for row in (4, 5, 6, 7):
        data = _with_broken_image(data, "validation", row)
    dm = make_dm(data, batch_size=1, augment=False, on_bad_sample="skip")  # each bad row: a batch of nothing
    dm.setup("fit")
    task = VQATask(**VQA_PARTS, vocabulary=dm.vocabulary, answers=dm.answers)
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(task, datamodule=dm)
    assert trainer.callback_metrics["train/skipped"] == 1 and trainer.callback_metrics["val/skipped"] == 4
    steps = optimizer_steps(trainer)
    assert steps == {23.0}  # 24 training batches, the empty one skipped


def task_with_nan_gradients_at(dm, calls: set[int], **kwargs) -> VQATask:
    """A VQATask whose loss stays finite but whose answer-head gradients are NaN at the given
    (0-based) backward calls, as a 0/0 in some backward makes them."""
    dm.setup("fit")
    task = VQATask(**VQA_PARTS, vocabulary=dm.vocabulary, answers=dm.answers, **kwargs)
    counter = iter(range(10**6))
    weight = [p for name, p in task.named_parameters() if p.dim() == 2][-1]
    weight.register_hook(lambda grad: grad * float("nan") if next(counter) in calls else grad)
    return task


def test_nan_gradients_of_a_finite_loss_stop_training_naming_the_step_and_parameter(tiny_vqa):
    dm = tiny_dm(tiny_vqa, batch_size=4, augment=False)
    task = task_with_nan_gradients_at(dm, {3})
    name = [n for n, p in task.named_parameters() if p.dim() == 2][-1]
    with pytest.raises(
        FloatingPointError, match=rf"gradients are NaN or infinite at global step 3 .*\['{name}'\]"
    ):
        quiet_trainer(max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0).fit(task, datamodule=dm)
    assert all(torch.isfinite(p).all() for p in task.parameters())


def test_skip_refuses_a_step_with_nan_gradients_and_counts_it(tiny_vqa, caplog):
    dm = tiny_dm(tiny_vqa, batch_size=4, augment=False)
    task = task_with_nan_gradients_at(dm, {1, 4}, on_nonfinite_loss="skip")
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0)
    with caplog.at_level(logging.WARNING, logger="vlkit.tasks.base"):
        trainer.fit(task, datamodule=dm)
    steps = optimizer_steps(trainer)
    assert steps == {4.0}  # 6 batches, 2 steps refused: no parameter moved in them
    assert trainer.callback_metrics["train/nonfinite_grad_skipped"] == 2
    assert all(torch.isfinite(p).all() for p in task.parameters())
    assert sum("non-finite gradients at global step" in r.getMessage() for r in caplog.records) == 2
