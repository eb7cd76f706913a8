"""CaptioningTask: loss terms, decoding for metrics, checkpoints that carry the tokenizer."""

from __future__ import annotations

import pytest
import torch

from vlkit.data import Preprocessing
from vlkit.data.captioning import CaptionBatch
from vlkit.tasks import CaptioningTask
from vlkit.text import WordCaptionTokenizer

TOKENIZER = WordCaptionTokenizer.from_corpus(["a red circle", "a blue square", "a green circle"])
IMAGE = {"backbone": "resnet10t", "feature_index": 1, "dim": 16}
DECODERS = {
    "show_attend_tell": {"name": "show_attend_tell", "embed_dim": 8, "hidden_dim": 16, "attention_dim": 8},
    "transformer": {"name": "transformer", "dim": 16},
}


def task(decoder: str | dict = "show_attend_tell", **kw) -> CaptioningTask:
    torch.manual_seed(0)
    decoder = DECODERS[decoder] if isinstance(decoder, str) else decoder
    args = {"image_encoder": IMAGE, "decoder": decoder, "vocabulary": TOKENIZER.vocabulary, **kw}
    return CaptioningTask(**args)


def batch() -> CaptionBatch:
    ids = [TOKENIZER.encode("a red circle"), TOKENIZER.encode("a blue square"), TOKENIZER.encode("a circle")]
    length = max(map(len, ids))
    caption_ids = torch.tensor([x + [0] * (length - len(x)) for x in ids])
    refs = [["a red circle"], ["a blue square", "blue square"], ["a green circle"]]
    return CaptionBatch(torch.randn(3, 3, 32, 32), caption_ids, caption_ids != 0, refs, 0)


class Logged:
    """Collects what the task logs."""

    def __init__(self, module):
        self.values = {}
        module.log = lambda name, value, **kw: self.values.__setitem__(name, value)


def test_training_loss_is_token_cross_entropy_plus_the_attention_penalty():
    b = batch()
    plain = task(attention_regularization=0.0).eval()  # no dropout: the by-hand loss matches
    logged = Logged(plain)
    total = plain._step(b, "train")
    # the loss by hand: mean cross-entropy over the real target tokens
    logits = plain(b.image, b.caption_ids[:, :-1], b.caption_mask[:, :-1]).logits
    targets, keep = b.caption_ids[:, 1:], b.caption_mask[:, 1:]
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(total, expected)
    assert "train/attention_penalty" not in logged.values

    regularised = task(attention_regularization=2.0).eval()
    logged = Logged(regularised)
    total = regularised._step(b, "train")
    penalty = logged.values["train/attention_penalty"]
    torch.testing.assert_close(total, logged.values["train/loss"] + 2.0 * penalty)
    assert penalty > 0


def test_label_smoothing_changes_the_loss():
    b = batch()
    a, s = task(), task(label_smoothing=0.1)
    Logged(a), Logged(s)
    assert not torch.allclose(a._step(b, "val"), s._step(b, "val"))


def test_reinforce_hard_attention_adds_the_policy_loss():
    t = task(decoder={**DECODERS["show_attend_tell"], "hard_attention": "reinforce"})
    logged = Logged(t)
    t.train()
    total = t._step(batch(), "train")
    assert "train/policy_loss" in logged.values and torch.isfinite(total)
    total.backward()
    assert t.model.decoder.score.score_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_evaluation_decodes_captions_into_the_metrics(decoder):
    t = task(decoder).eval()
    Logged(t)
    with torch.no_grad():
        t._evaluate(batch(), "val")
    state = t.caption_metrics["val"].compute()
    assert set(state) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d"}
    captions = t.decode(t.generate(batch().image, beam_size=2, max_length=5).tokens)
    assert len(captions) == 3 and all(set(c.split()) <= set(TOKENIZER.vocabulary) for c in captions)


def test_checkpoint_carries_the_tokenizer(tmp_path):
    t = task().eval()
    path = tmp_path / "caption.ckpt"
    checkpoint = {
        "state_dict": t.state_dict(),
        "hyper_parameters": dict(t.hparams),
        "pytorch-lightning_version": "2.0.0",
        "vlkit_task": "captioning",
    }
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="earlier vlkit"):  # no vlkit_format: written by an earlier version
        CaptioningTask.load_from_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    t.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    loaded = CaptioningTask.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()
    assert loaded.tokenizer.vocabulary == TOKENIZER.vocabulary
    image = batch().image
    torch.testing.assert_close(loaded.generate(image).tokens, t.generate(image).tokens)
    assert torch.load(path, weights_only=True)["vlkit_task"] == "captioning"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decoder": "lstm"}, r"unknown decoder 'lstm'; valid: \['show_attend_tell', 'transformer'\]"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"beam_size": 0}, "beam_size"),
        ({"optimization": {"lr": 0.0}}, "lr > 0"),
        ({"vocabulary": None}, "exactly one of vocabulary"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message):
    args = {"vocabulary": TOKENIZER.vocabulary, **kwargs}
    with pytest.raises(ValueError, match=message):
        CaptioningTask(**args)


def test_predict_captions_a_batch_of_raw_images():
    t = task(preprocessing=Preprocessing(image_size=32), max_length=6)
    images = torch.rand(2, 3, 40, 40)
    predictions = t.predict(images, beam_size=2, return_attention=True)
    assert len(predictions) == 2 and t.training  # predicts in eval mode, then restores the mode
    reference = t.eval().generate(t.preprocessing.image_transform()(images), beam_size=2).tokens
    for prediction, row in zip(predictions, reference):
        assert prediction.caption == t.decode(row[None])[0]
        assert 1 <= len(prediction.tokens) <= 6 and prediction.log_prob <= 0
        assert prediction.attention.shape == (len(prediction.tokens), 64) and prediction.grid_size == (8, 8)
        torch.testing.assert_close(prediction.attention.sum(-1), torch.ones(len(prediction.tokens)))
        if prediction.tokens[-1] == "<eos>":
            assert "<eos>" not in prediction.caption
    assert t.predict(images[0])[0].attention is None
    with pytest.raises(ValueError, match="beam_size"):
        t.predict(images, beam_size=0)


def test_a_batch_loss_is_made_of_the_losses_of_its_captions_alone():
    # padding invariance: "a circle" is one token shorter than the others, so its last input
    # (<eos>, target padding) must count neither in the cross-entropy nor in the attention penalty
    b, model, lam = batch(), task(attention_regularization=1.5).eval(), 1.5  # eval: no dropout
    Logged(model)
    total = model._step(b, "train")
    alone_loss, alone_penalty, tokens = [], [], []
    for i in range(3):
        length = int(b.caption_mask[i].sum())
        one = CaptionBatch(
            b.image[i : i + 1], b.caption_ids[i : i + 1, :length], b.caption_mask[i : i + 1, :length], [], 0
        )
        logged = Logged(model)
        model._step(one, "train")
        alone_loss.append(logged.values["train/loss"])
        alone_penalty.append(logged.values["train/attention_penalty"])
        tokens.append(length - 1)  # targets: the words and <eos>
    assert tokens == [4, 4, 3]
    # the batch loss: cross-entropy averaged over all target tokens, penalty averaged over captions
    loss = sum(l * n for l, n in zip(alone_loss, tokens)) / sum(tokens)
    expected = loss + lam * torch.stack(alone_penalty).mean()
    torch.testing.assert_close(total, expected)


def test_reinforce_counts_the_steps_that_predict_a_caption_token(monkeypatch):
    from vlkit.attention import HardContext

    held = []
    original = HardContext.hold
    monkeypatch.setattr(
        HardContext, "hold", lambda self, lp, ent: (held.append((lp, ent)), original(self, lp, ent))
    )
    t = task(decoder={**DECODERS["show_attend_tell"], "hard_attention": "reinforce"}).train()
    Logged(t)
    b = batch()
    t._step(b, "train")
    (log_prob, entropy), target_mask = held[0], b.caption_mask[:, 1:]
    assert (log_prob[~target_mask] == 0).all() and (entropy[~target_mask] == 0).all()
    assert (log_prob[target_mask] < 0).all() and (entropy[target_mask] > 0).all()
    assert (~target_mask).sum() == 1  # the <eos> input of "a circle", which predicts padding


def test_a_decode_of_empty_captions_is_warned_about(monkeypatch, caplog):
    t = task().eval()
    Logged(t)
    monkeypatch.setattr(t, "decode", lambda tokens: ["", "", "a red circle"])  # two empty captions
    with torch.no_grad(), caplog.at_level("WARNING", logger="vlkit.tasks.captioning"):
        t._evaluate(batch(), "val")
        t._log_metrics("val")
    assert "2 of 3 validation captions are empty" in caplog.text
    caplog.clear()
    with torch.no_grad(), caplog.at_level("WARNING", logger="vlkit.tasks.captioning"):
        t._evaluate(batch(), "val")  # counted afresh for the next evaluation
        t._log_metrics("val")
    assert "2 of 3 validation captions are empty" in caplog.text
