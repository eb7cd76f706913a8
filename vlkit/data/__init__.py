"""Data: packaged sources and Lightning DataModules over Hugging Face datasets."""

from vlkit.data.bad_samples import BAD_SAMPLE_POLICIES, BadSampleError
from vlkit.data.base import SplitDataModule
from vlkit.data.captioning import CaptionBatch, CaptionDataModule, caption_list
from vlkit.data.cluttered import build_cluttered_easy_vqa
from vlkit.data.emoji import build_emoji_captions
from vlkit.data.emoji_sentiment import SENTIMENT_CLASSES, build_emoji_sentiment
from vlkit.data.images import load_image
from vlkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, image_transform
from vlkit.data.sentiment import SentimentBatch, SentimentDataModule, balanced_class_weights
from vlkit.data.sources import SOURCES, build_easy_vqa, load_dataset_dict
from vlkit.data.splits import hold_out_by_image, load_splits
from vlkit.data.vqa import (
    VQABatch,
    VQADataModule,
    answer_accuracies,
    answer_list,
    normalize_answer,
    soft_scores,
    vqa_accuracy,
)

__all__ = [
    "BAD_SAMPLE_POLICIES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SENTIMENT_CLASSES",
    "SOURCES",
    "BadSampleError",
    "CaptionBatch",
    "CaptionDataModule",
    "Preprocessing",
    "SentimentBatch",
    "SentimentDataModule",
    "SplitDataModule",
    "VQABatch",
    "VQADataModule",
    "answer_accuracies",
    "answer_list",
    "balanced_class_weights",
    "build_cluttered_easy_vqa",
    "build_easy_vqa",
    "build_emoji_captions",
    "build_emoji_sentiment",
    "caption_list",
    "hold_out_by_image",
    "image_transform",
    "load_dataset_dict",
    "load_image",
    "load_splits",
    "normalize_answer",
    "soft_scores",
    "vqa_accuracy",
]
