"""Data: packaged sources and Lightning DataModules over Hugging Face datasets."""

from vlkit.data.captioning import CaptionBatch, CaptionDataModule, caption_list
from vlkit.data.emoji import build_emoji_captions
from vlkit.data.sources import SOURCES, build_easy_vqa, load_dataset_dict
from vlkit.data.vqa import (
    BadSampleError,
    VQABatch,
    VQADataModule,
    answer_list,
    image_transform,
    load_image,
    normalize_answer,
    soft_scores,
)

__all__ = [
    "SOURCES",
    "BadSampleError",
    "CaptionBatch",
    "CaptionDataModule",
    "VQABatch",
    "VQADataModule",
    "answer_list",
    "build_easy_vqa",
    "build_emoji_captions",
    "caption_list",
    "image_transform",
    "load_dataset_dict",
    "load_image",
    "normalize_answer",
    "soft_scores",
]
