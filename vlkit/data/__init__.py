"""Data: packaged sources and Lightning DataModules over Hugging Face datasets."""

from vlkit.data.captioning import CaptionBatch, CaptionDataModule, caption_list
from vlkit.data.emoji import build_emoji_captions
from vlkit.data.emoji_sentiment import SENTIMENT_CLASSES, build_emoji_sentiment
from vlkit.data.sentiment import SentimentBatch, SentimentDataModule, balanced_class_weights
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
    "SENTIMENT_CLASSES",
    "SOURCES",
    "BadSampleError",
    "CaptionBatch",
    "CaptionDataModule",
    "SentimentBatch",
    "SentimentDataModule",
    "VQABatch",
    "VQADataModule",
    "answer_list",
    "balanced_class_weights",
    "build_easy_vqa",
    "build_emoji_captions",
    "build_emoji_sentiment",
    "caption_list",
    "image_transform",
    "load_dataset_dict",
    "load_image",
    "normalize_answer",
    "soft_scores",
]
