"""Feature caching: a frozen backbone's output computed once per image, and training from it."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

import vlkit.data.features as features_module
from tests.conftest import make_dataset_dict, make_sentiment_dataset_dict
from tests.parts import SENTIMENT_PARTS, VQA_PARTS
from tests.tasks.test_vqa_task import quiet_trainer
from vlkit.data import BadSampleError, SentimentDataModule, VQADataModule
from vlkit.data.features import image_key
from vlkit.tasks import SentimentTask, VQATask
from vlkit.vision import BackboneFeatures, ImageEncoder

FROZEN = {"backbone": "resnet10t", "feature_index": 2, "dim": 32, "freeze": True}
SMALL = {**VQA_PARTS, "image_encoder": FROZEN, "head": {"hidden_dim": 32, "dropout": 0.1}}


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("VLKIT_CACHE", str(tmp_path / "cache"))


def vqa_dm(data=None, **overrides) -> VQADataModule:
    args = {"image_column": "img", "question_column": "q", "answer_column": "answers", "batch_size": 8}
    return VQADataModule(
        data if data is not None else make_dataset_dict(), image_size=32, **{**args, **overrides}
    )


def test_cached_features_give_the_same_outputs_and_are_computed_once_per_image():
    dm, cached = vqa_dm(augment=True), vqa_dm(cache_features=True, augment=True)
    task = VQATask(**SMALL, vocabulary=dm.vocabulary, answers=dm.answers).eval()
    cached.cache_image_features(task.model.image_encoder)
    # each image is asked two questions, and equal images (same colour and shape) share one entry
    train_cache = cached._feature_caches["train"]
    distinct = {name: len({c["bytes"] for c in dm._hf[name]["img"]}) for name in ("train", "validation")}
    assert 1 < distinct["train"] < 12
    assert train_cache.features.shape[:2] == (2, distinct["train"])  # the image and its mirror (augment)
    assert cached._feature_caches["validation"].features.shape[:2] == (1, distinct["validation"])
    assert isinstance(train_cache.features, np.memmap)  # memory-mapped from the cache folder
    dm.setup()
    plain, fast = next(iter(dm.val_dataloader())), next(iter(cached.val_dataloader()))
    assert isinstance(fast.image, BackboneFeatures) and fast.image.feature_map.shape == (8, 128, 4, 4)
    with torch.no_grad():
        expected = task(plain.image, plain.question_ids, plain.question_mask).logits
        got = task(fast.image, fast.question_ids, fast.question_mask).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # the mirror variant is the backbone's output on the flipped training image
    from vlkit.data import image_transform, load_image

    image = image_transform(32, train=False, augment=False)(load_image(dm._hf["train"][0]["img"]))[None]
    with torch.no_grad():
        flipped = task.model.image_encoder.backbone_features(image.flip(-1)).feature_map[0]
    j = train_cache.index[0]
    torch.testing.assert_close(
        torch.from_numpy(np.array(train_cache.features[1, j])), flipped, atol=1e-5, rtol=0
    )


def test_without_flips_the_cache_holds_no_mirror_image():
    dm = vqa_dm(cache_features=True)  # VQA default: augment off
    task = VQATask(**SMALL, vocabulary=dm.vocabulary, answers=dm.answers).eval()
    dm.cache_image_features(task.model.image_encoder)
    assert dm._feature_caches["train"].features.shape[0] == 1


@pytest.mark.parametrize("augment", [False, True])
def test_seeded_training_is_the_same_with_and_without_the_cache(augment):
    results = []
    for cache in (False, True, True):  # the third run loads the features from disk
        pl.seed_everything(0)
        dm = vqa_dm(cache_features=cache, augment=augment)
        task = VQATask(**SMALL, vocabulary=dm.vocabulary, answers=dm.answers)
        trainer = quiet_trainer(max_epochs=2)
        trainer.fit(task, dm)
        results.append(trainer.validate(task, dm, verbose=False)[0])
    assert results[0] == results[1] == results[2]


def test_blocks_after_the_backbone_train_the_same_from_the_cache():
    """CBAM and STN on the read map apply to cached features as to the backbone's own output."""
    results = []
    encoder = {**FROZEN, "cbam": "output", "stn": "output"}
    for cache in (False, True):
        pl.seed_everything(0)
        dm = vqa_dm(cache_features=cache, augment=True)
        task = VQATask(**{**SMALL, "image_encoder": encoder}, vocabulary=dm.vocabulary, answers=dm.answers)
        trainer = quiet_trainer(max_epochs=2)
        trainer.fit(task, dm)
        assert bool(dm._feature_caches) == cache
        results.append(trainer.validate(task, dm, verbose=False)[0])
        gate = task.model.image_encoder.output_cbam.gate
        assert gate.item() != 0  # the block trained
    assert results[0] == pytest.approx(results[1], abs=1e-5)


def test_sentiment_trains_from_cached_features():
    pl.seed_everything(0)
    dm = SentimentDataModule(
        make_sentiment_dataset_dict(),
        image_column="img",
        text_column="sentence",
        label_column="polarity",
        image_size=32,
        batch_size=8,
        cache_features=True,
    )
    task = SentimentTask(
        **{**SENTIMENT_PARTS, "image_encoder": FROZEN}, classes=dm.classes, vocabulary=dm.vocabulary
    )
    trainer = quiet_trainer(max_steps=2, limit_val_batches=1)
    trainer.fit(task, dm)
    assert set(dm._feature_caches) == {"train", "validation", "test"}
    assert isinstance(next(iter(dm.train_dataloader())).image, BackboneFeatures)


def test_a_trainable_backbone_cannot_be_cached():
    dm = vqa_dm(cache_features=True)
    encoder = ImageEncoder("resnet10t", 32, feature_index=1, freeze=1, cbam="stages")
    assert not encoder.cacheable
    with pytest.raises(
        ValueError, match=r"whole backbone is frozen, or its first k stages.*freeze=1, cbam='stages'"
    ):
        dm.cache_image_features(encoder)
    with pytest.raises(ValueError, match="not frozen"):
        encoder(BackboneFeatures(torch.zeros(1, 64, 4, 4)))
    dm.setup("fit")  # no trainer, no encoder: nothing cached yet
    with pytest.raises(ValueError, match="cache_features is set but no features were cached"):
        dm.train_dataloader()


@pytest.mark.parametrize("augment", [False, True])
def test_partial_fine_tuning_trains_the_same_from_the_cache_of_its_frozen_stages(augment):
    """freeze: k: the cache holds the k-th stage's output, and the later stages, which train, run
    on it: the same seeded training as from the images."""
    encoder = {**FROZEN, "freeze": 1, "cbam": "output"}
    results, stage2 = [], []
    for cache in (False, True):
        pl.seed_everything(0)
        dm = vqa_dm(cache_features=cache, augment=augment)
        task = VQATask(**{**SMALL, "image_encoder": encoder}, vocabulary=dm.vocabulary, answers=dm.answers)
        before = task.model.image_encoder.backbone.layer1[0].conv1.weight.clone()
        trainer = quiet_trainer(max_epochs=2)
        trainer.fit(task, dm)
        assert bool(dm._feature_caches) == cache
        if cache:  # resnet10t's first stage, its stem (64 channels at stride 2): 16 x 16 cells of 32 pixels
            assert dm._feature_caches["train"].features.shape[2:] == (64, 16, 16)
        results.append(trainer.validate(task, dm, verbose=False)[0])
        stage2.append(task.model.image_encoder.backbone.layer1[0].conv1.weight.detach())
        assert not torch.equal(stage2[-1], before)  # the stage after the cached ones trained
    assert results[0] == pytest.approx(results[1], abs=1e-5)
    torch.testing.assert_close(stage2[0], stage2[1], atol=1e-5, rtol=1e-5)


def test_a_partial_cache_is_keyed_by_the_frozen_stages_alone():
    """The stages after the cached ones train: their weights do not key the cache (a resumed run
    reuses it), the frozen stages' weights and how many are frozen do."""
    from vlkit.data.features import encoder_fingerprint

    torch.manual_seed(0)
    encoder = ImageEncoder("resnet10t", 32, feature_index=2, freeze=1)
    key = encoder_fingerprint(encoder)
    with torch.no_grad():  # freeze: 1 is the stem; layer1 trains
        encoder.backbone.layer1[0].conv1.weight.add_(1.0)
    assert encoder_fingerprint(encoder) == key
    with torch.no_grad():
        encoder.backbone.conv1[0].weight.add_(1.0)
    assert encoder_fingerprint(encoder) != key
    two = ImageEncoder("resnet10t", 32, feature_index=2, freeze=2)
    two.backbone.load_state_dict(encoder.backbone.state_dict())
    whole = ImageEncoder("resnet10t", 32, feature_index=2, freeze=True)
    whole.backbone.load_state_dict(encoder.backbone.state_dict())
    assert len({encoder_fingerprint(e) for e in (encoder, two, whole)}) == 3


def test_the_disk_cache_is_reused_and_keyed_by_the_weights(monkeypatch):
    dm = vqa_dm(cache_features=True)
    encoder = ImageEncoder("resnet10t", 32, feature_index=1, freeze=True)
    dm.cache_image_features(encoder)
    first = np.array(dm._feature_caches["test"].features)

    def no_compute(*args, **kwargs):
        raise AssertionError("the features were computed again")

    monkeypatch.setattr(features_module, "_compute", no_compute)
    again = vqa_dm(cache_features=True)
    again.cache_image_features(encoder)
    np.testing.assert_array_equal(np.array(again._feature_caches["test"].features), first)
    other = ImageEncoder("resnet10t", 32, feature_index=1, freeze=True)  # other random weights
    with pytest.raises(AssertionError, match="computed again"):
        vqa_dm(cache_features=True).cache_image_features(other)


def test_the_cache_is_keyed_by_the_stage_the_backbone_is_read_at():
    """EfficientNet's timm feature extractor holds every stage's weights whichever stage is read, so
    the same weights read at stride 8 and at stride 16 must not share a cache."""
    from vlkit.data.features import encoder_fingerprint

    stride16 = ImageEncoder("efficientnet_lite0", 32, pretrained=False, feature_index=3, freeze=True)
    stride8 = ImageEncoder("efficientnet_lite0", 32, pretrained=False, feature_index=2, freeze=True)
    stride8.backbone.load_state_dict(stride16.backbone.state_dict())
    assert stride8.backbone.state_dict().keys() == stride16.backbone.state_dict().keys()
    assert encoder_fingerprint(stride8) != encoder_fingerprint(stride16)
    dm = vqa_dm(cache_features=True)
    dm.cache_image_features(stride8)
    assert dm._feature_caches["test"].features.shape[2] == 40  # stride-8 channels, not stride-16's 112


def test_unreadable_images_are_an_error_or_skipped_when_caching():
    data = make_dataset_dict()
    rows = data["validation"].to_dict()
    rows["img"][3] = {"bytes": b"not an image", "path": None}
    data["validation"] = datasets.Dataset.from_dict(rows).cast_column("img", datasets.Image())
    encoder = ImageEncoder("resnet10t", 32, feature_index=1, freeze=True)
    with pytest.raises(
        BadSampleError, match=r"split 'validation', row 3, column 'img': cannot read the image"
    ):
        vqa_dm(data, cache_features=True).cache_image_features(encoder)
    dm = vqa_dm(data, cache_features=True, on_bad_sample="skip")
    dm.cache_image_features(encoder)
    assert dm._feature_caches["validation"].index[3] == -1
    batch = next(iter(dm.val_dataloader()))
    assert batch.num_skipped == 1 and batch.image.feature_map.shape[0] == 7


def test_max_image_pixels_applies_when_caching_and_keys_the_cache():
    data = make_dataset_dict()
    rows = data["validation"].to_dict()
    large = io.BytesIO()
    Image.new("RGB", (100, 100), "red").save(large, format="PNG")
    rows["img"][3] = {"bytes": large.getvalue(), "path": None}
    data["validation"] = datasets.Dataset.from_dict(rows).cast_column("img", datasets.Image())
    encoder = ImageEncoder("resnet10t", 32, feature_index=1, freeze=True)
    limited = vqa_dm(data, cache_features=True, on_bad_sample="skip", max_image_pixels=5000)
    limited.cache_image_features(encoder)
    assert limited._feature_caches["validation"].index[3] == -1  # 10,000 pixels > 5,000
    unlimited = vqa_dm(data, cache_features=True, on_bad_sample="skip", max_image_pixels=None)
    unlimited.cache_image_features(encoder)  # another cache: the limit decides which images are unreadable
    assert unlimited._feature_caches["validation"].index[3] != -1


def test_image_key_uses_the_bytes_or_the_file_as_it_is_now(tmp_path):
    assert image_key({"path": "a/b.png", "bytes": None}) == "a/b.png" == image_key("a/b.png")  # missing
    image = tmp_path / "b.png"
    image.write_bytes(b"first")
    before = image_key(str(image))
    assert before == image_key({"path": str(image), "bytes": None}) != str(image)
    image.write_bytes(b"second image")  # replaced under the same name: another key
    assert image_key(str(image)) != before
    assert image_key({"path": None, "bytes": b"x"}) == image_key({"path": "other", "bytes": b"x"})
    assert image_key({"path": None, "bytes": b"x"}) != image_key({"path": None, "bytes": b"y"})


def test_auto_caches_a_frozen_backbone_and_reads_images_otherwise():
    blocks_after = {**FROZEN, "cbam": "output", "stn": "output"}  # after the backbone: still cached
    for image_encoder, cached in (
        (FROZEN, True),
        ({**FROZEN, "cbam": "stages"}, False),
        (blocks_after, True),
        ({**FROZEN, "freeze": 1}, True),  # the first stage frozen: its output is cached
        ({**FROZEN, "freeze": False}, False),
    ):
        dm = vqa_dm(cache_features="auto")
        task = VQATask(
            **{**SMALL, "image_encoder": image_encoder}, vocabulary=dm.vocabulary, answers=dm.answers
        )
        quiet_trainer(max_steps=1, limit_val_batches=1).fit(task, dm)
        assert bool(dm._feature_caches) == cached
        assert isinstance(next(iter(dm.train_dataloader())).image, BackboneFeatures) == cached
    with pytest.raises(ValueError, match="cache_features must be true, false or 'auto', got 'yes'"):
        vqa_dm(cache_features="yes")


def test_flips_are_drawn_from_seed_epoch_and_sample():
    from vlkit.data.batching import EpochSampler, flip_draw

    draws = [[flip_draw(0, epoch, i) for i in range(400)] for epoch in (0, 1)]
    assert 0.4 < np.mean(draws[0]) < 0.6 and draws[0] != draws[1]  # about half, new each epoch
    assert draws[0] == [flip_draw(0, 0, i) for i in range(400)] != [flip_draw(1, 0, i) for i in range(400)]
    dm = vqa_dm(augment=True)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, EpochSampler)
    loader.sampler.set_epoch(3)
    indices = list(loader.sampler)
    assert {epoch for _, epoch in indices} == {3}
    dataset = loader.dataset
    first = next(i for i, _ in indices if flip_draw(dm.seed, 3, i))
    image = dataset[(first, 3)][0]
    assert torch.equal(image, dataset[first][0].flip(-1))  # a plain index: never flipped


def test_a_float16_cache_halves_the_bytes_and_serves_float32_features_close_to_float32():
    encoder = ImageEncoder("resnet10t", 32, feature_index=1, freeze=True)
    full = vqa_dm(cache_features=True)
    full.cache_image_features(encoder)
    half = vqa_dm(cache_features=True, feature_cache_dtype="float16")
    half.cache_image_features(encoder)
    a, b = full._feature_caches["train"], half._feature_caches["train"]
    assert b.features.dtype == np.float16 and b.features.nbytes * 2 == a.features.nbytes
    x, y = a.sample(0).feature_map, b.sample(0).feature_map
    assert y.dtype == torch.float32 and not torch.equal(x, y)
    torch.testing.assert_close(y, x, atol=1e-2 * float(x.abs().max()), rtol=1e-2)
    with pytest.raises(ValueError, match="feature_cache_dtype must be 'float32' or 'float16', got 'int8'"):
        vqa_dm(feature_cache_dtype="int8")
