"""The base of every DataModule: the fields the three tasks share, declared once, and the loaders.

A DataModule is a documented dataclass (as in the Lightning examples): the shared fields are
declared here; a task's DataModule declares the columns and text settings it adds, and its own
defaults (dataset, image size, batch size). Bad samples follow ``on_bad_sample``
(:mod:`vlkit.data.bad_samples`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from vlkit.data.bad_samples import check_bad_sample_policy
from vlkit.data.batching import make_loader
from vlkit.data.images import DEFAULT_MAX_IMAGE_PIXELS
from vlkit.data.preprocessing import Preprocessing

__all__ = ["SplitDataModule"]


@dataclass(eq=False)
class SplitDataModule(pl.LightningDataModule, ABC):
    """Base DataModule: train / validation / test loaders over the prepared splits of a dataset.

    Args:
        dataset: a packaged source name (``"easy_vqa"``, ``"emoji_captions"``,
            ``"emoji_sentiment"``), a ``save_to_disk`` folder, a local path or Hub id for
            ``datasets.load_dataset``, a ``datasets.DatasetDict``, or a ``{split name: source}``
            mapping of those, one source per split (see :func:`vlkit.data.load_dataset_dict`).
        dataset_config: configuration name passed to ``datasets.load_dataset``.
        image_column: column with the image (``datasets.Image``, a path or bytes).
        train_split: name of the training split.
        val_split: name of the validation split; if the dataset has none, whole images (chosen with
            ``seed``), each with all its rows, are held out of the training split until
            ``val_fraction`` of its rows are, so no validation image is a training image
            (:func:`vlkit.data.splits.hold_out_by_image`; the log says how the split was made).
        test_split: name of the test split; if the dataset has none, there is no test split.
        val_fraction: fraction held out when there is no validation split, in ``(0, 1)``.
        min_word_freq: with a word vocabulary, words seen fewer times in training become
            ``<unk>`` (>= 1).
        image_size: images are resized to ``image_size × image_size`` pixels (>= 1).
        augment: random horizontal flips of training images.
        batch_size: samples per batch, per process (>= 1).
        num_workers: DataLoader worker processes (0 = load in the main process).
        on_bad_sample: ``"error"`` (stop, naming split, row and column) or ``"skip"`` (leave the
            sample out, counted and reported).
        cache_features: ``True``: compute the frozen image backbone's features once per image
            (on the trainer's accelerator, kept on disk) and train from them instead of decoding
            images every epoch (:mod:`vlkit.data.features`); needs a frozen backbone (``freeze:
            true``, or ``freeze: k``: the first ``k`` stages' output is cached and the later stages
            train on it) without CBAM or spatial transformer inside (an error says so otherwise).
            ``"auto"``: cache when the backbone is so, else read images. ``False``: read images. The task gives its
            image encoder when training starts (or call :meth:`cache_image_features` yourself).
        feature_cache_dtype: how cached features are stored: ``"float32"`` or ``"float16"``
            (half the disk and page-cache bytes; read back as float32).
        max_samples: if set, use only the first ``max_samples`` rows of each split (smoke runs).
        max_image_pixels: images of more pixels (width × height) are unreadable, refused before
            decoding as a guard against decompression bombs (and so follow ``on_bad_sample``);
            default: Pillow's limit, about 89.5 megapixels; ``null``/None: no limit (trusted data).
        seed: seed of the held-out validation split and, with the epoch, of the training order
            and of the flips (see :func:`vlkit.data.batching.make_loader`).

    Subclasses fill ``self._hf`` and ``self._splits`` (by role) in :meth:`_prepare`, and build a
    split's dataset and collate function in :meth:`_dataset` and :meth:`_collate_fn`.

    Raises:
        ValueError: a value out of range or an unknown ``on_bad_sample`` (the message names it).
    """

    dataset: Any = None
    dataset_config: str | None = None
    image_column: str = "image"
    train_split: str = "train"
    val_split: str = "validation"
    test_split: str = "test"
    val_fraction: float = 0.1
    min_word_freq: int = 1
    image_size: int = 224
    augment: bool = False
    batch_size: int = 32
    num_workers: int = 0
    on_bad_sample: str = "error"
    cache_features: bool | Literal["auto"] = False
    feature_cache_dtype: Literal["float32", "float16"] = "float32"
    max_samples: int | None = None
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    seed: int = 0

    def __post_init__(self) -> None:
        super().__init__()
        check_bad_sample_policy(self.on_bad_sample)
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if min(self.batch_size, self.image_size, self.min_word_freq) < 1 or self.num_workers < 0:
            raise ValueError(
                "batch_size, image_size and min_word_freq must be >= 1 and num_workers >= 0; got "
                f"batch_size={self.batch_size}, image_size={self.image_size}, "
                f"min_word_freq={self.min_word_freq}, num_workers={self.num_workers}"
            )
        if self.feature_cache_dtype not in ("float32", "float16"):
            raise ValueError(
                f"feature_cache_dtype must be 'float32' or 'float16', got {self.feature_cache_dtype!r}"
            )
        if self.cache_features not in (True, False, "auto"):
            raise ValueError(f"cache_features must be true, false or 'auto', got {self.cache_features!r}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples must be None or >= 1, got {self.max_samples}")
        if self.max_image_pixels is not None and self.max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be None (no limit) or >= 1, got {self.max_image_pixels}")
        self.save_hyperparameters(ignore=None if isinstance(self.dataset, str | dict) else ["dataset"])
        self.split_names = {"train": self.train_split, "validation": self.val_split, "test": self.test_split}
        self._prepared = False
        self._hf: dict[str, Any] = {}
        self._splits: dict[str, Any] = {}
        self._feature_caches: dict[str, Any] = {}

    @property
    @abstractmethod
    def text_length_limit(self) -> int | None:
        """The most text tokens of a sample (questions, texts or captions), as :class:`Preprocessing` saves it."""

    @property
    def preprocessing(self) -> Preprocessing:
        """How this DataModule prepares inputs (image size, normalisation, text length); ``vlkit
        fit`` gives it to the task, which saves it with the model."""
        return Preprocessing(image_size=self.image_size, max_text_length=self.text_length_limit)

    @abstractmethod
    def _prepare(self) -> None:
        """Load the splits and prepare their text once (idempotent)."""

    @abstractmethod
    def _dataset(self, name: str, transform: Callable) -> Dataset:
        """The dataset of split ``name`` with the image ``transform``."""

    @abstractmethod
    def _collate_fn(self) -> Callable:
        """The (picklable) collate function of the loaders."""

    def setup(self, stage: str | None = None) -> None:
        self._prepare()

    def has_split(self, role: str) -> bool:
        """Whether the data has the split of ``role`` (``"train"``, ``"validation"`` or ``"test"``;
        a validation split is held out of training when the dataset has none)."""
        self._prepare()
        return role in self._splits

    def cache_image_features(self, encoder: Any, device: Any = "cpu") -> None:
        """Compute (or load from disk) the frozen backbone's features of every split's images,
        which the loaders then serve instead of images (:mod:`vlkit.data.features`). Done once;
        later calls do nothing.

        Args:
            encoder: a :class:`vlkit.vision.ImageEncoder` whose backbone is frozen.
            device: where the backbone runs (e.g. ``"cuda"``).

        Raises:
            ValueError: the backbone is not frozen.
            BadSampleError: an unreadable image with ``on_bad_sample="error"``.
        """
        from vlkit.data.features import build_feature_cache

        self._prepare()
        if self._feature_caches:
            return
        for name, split in self._splits.items():
            self._feature_caches[name] = build_feature_cache(
                self._hf[name],
                split.rows,
                self.image_column,
                name,
                encoder,
                self.preprocessing,
                flips=name == "train" and self.augment,
                on_bad_sample=self.on_bad_sample,
                device=device,
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                max_image_pixels=self.max_image_pixels,
                storage=self.feature_cache_dtype,
            )

    def _loader(self, name: str) -> DataLoader:
        self._prepare()
        if name not in self._splits:
            raise ValueError(f"the dataset has no {name!r} split (looked for {self.split_names[name]!r})")
        if self.cache_features is True and not self._feature_caches:
            raise ValueError(
                "cache_features is set but no features were cached: train with a vlkit task (it gives its "
                "image encoder when training starts) or call cache_image_features(encoder) first"
            )
        train = name == "train"
        dataset = self._dataset(name, self.preprocessing.image_transform())  # flips: by the dataset
        dataset.limit_image_pixels(self.max_image_pixels)
        if name in self._feature_caches:
            dataset.use_feature_cache(self._feature_caches[name])
        if train and self.augment:
            dataset.flip_at_random(self.seed)
        trainer = getattr(self, "trainer", None)
        loader = make_loader(
            dataset,
            self.batch_size,
            train,
            self.num_workers,
            self._collate_fn(),
            seed=self.seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )
        if train and trainer is not None:  # the trainer sets it each epoch, but after a restart only later
            loader.sampler.set_epoch(trainer.current_epoch)
        return loader

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
