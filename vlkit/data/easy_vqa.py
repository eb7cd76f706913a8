"""easy-VQA (the PyPI ``easy-vqa`` package) as a ``datasets.DatasetDict``."""

from __future__ import annotations

import random
from typing import Any

__all__ = ["build_easy_vqa"]


def build_easy_vqa(val_fraction: float = 0.1, seed: int = 0) -> Any:
    """easy-VQA (the PyPI ``easy-vqa`` package) as a ``DatasetDict``.

    64×64 RGB images of one coloured shape with questions about colour, shape and presence;
    13 answers. The package has train (4,000 images, 38,575 questions) and test (1,000
    images, 9,673 questions) splits; ``validation`` is carved out of train **by image**
    (``val_fraction`` of the train images, chosen with ``seed``), so no validation image is
    seen in training.

    Returns:
        ``DatasetDict`` with splits ``train``, ``validation``, ``test`` and columns
        ``image`` (``datasets.Image``), ``question`` (str), ``answer`` (str), ``image_id`` (int).

    Raises:
        ValueError: if ``val_fraction`` is not in ``[0, 1)``.
    """
    import datasets
    import easy_vqa

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")

    def rows(questions, answers, image_ids, paths) -> dict[str, list]:
        return {
            "image": [paths[i] for i in image_ids],
            "question": list(questions),
            "answer": list(answers),
            "image_id": list(image_ids),
        }

    train_paths = easy_vqa.get_train_image_paths()
    train = rows(*easy_vqa.get_train_questions(), train_paths)
    held_out = set(random.Random(seed).sample(sorted(train_paths), int(len(train_paths) * val_fraction)))
    splits = {"train": {k: [] for k in train}, "validation": {k: [] for k in train}}
    for i, image_id in enumerate(train["image_id"]):
        target = splits["validation" if image_id in held_out else "train"]
        for key in train:
            target[key].append(train[key][i])
    splits["test"] = rows(*easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths())
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "image_id": datasets.Value("int64"),
        }
    )
    return datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(data, features=features) for name, data in splits.items()}
    )
