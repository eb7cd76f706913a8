"""The Hub recipes (``recipes/hub/*.yaml``) on local twins of the Hub datasets they name.

The Hub cannot be reached here, so each test builds a few rows with exactly the schema of the
dataset a recipe names (column names, feature types including nested answer dicts, caption lists
and ClassLabel / integer labels, split names; images as ``datasets.Image`` PNGs), writes it with
``save_to_disk`` and runs the recipe on it: ``vlkit fit --config <recipe> --trainer.fast_dev_run 1``
with only the data source, the trainer (CPU, fp32, one process) and the image backbone (the packaged
EfficientNet-Lite0: no download) overridden. Column mapping, splits, answer / caption / label
preprocessing and the model are the recipe's. (``tests/test_cli.py`` skips ``recipes/hub``: those
recipes need these twins, not its tiny generic fixtures.)
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import COLORS, SHAPES, shape_png
from vlkit.cli import cli_main
from vlkit.data import load_dataset_dict

HUB = Path(__file__).parents[1] / "recipes" / "hub"

#: What every test overrides: the data source is added per test; the rest of the recipe stands.
OFFLINE_CPU = [
    "--trainer.fast_dev_run",
    "1",
    "--trainer.accelerator",
    "cpu",
    "--trainer.devices",
    "1",
    "--trainer.precision",
    "32-true",
    "--trainer.strategy",
    "auto",
    "--trainer.enable_progress_bar",
    "false",
    "--model.init_args.image_encoder.backbone",
    "efficientnet_lite0",
    "--model.init_args.image_encoder.pretrained",
    "false",
    "--model.init_args.image_encoder.packaged_weights",
    "true",
    "--data.init_args.image_size",
    "64",
    "--data.init_args.num_workers",
    "0",
    "--data.init_args.batch_size",
    "4",
]


def _features(kind: str):
    """The ``datasets.Features`` of the Hub datasets the recipes name (from their dataset cards)."""
    import datasets

    string, int64 = datasets.Value("string"), datasets.Value("int64")
    answer = {"answer": string, "answer_confidence": string, "answer_id": int64}
    return {
        # Multimodal-Fatima/VQAv2_{train,validation}: `answers` holds the ten answer strings,
        # `answers_original` the official {answer, answer_confidence, answer_id} records
        "vqav2_fatima": datasets.Features(
            {
                "question_type": string,
                "multiple_choice_answer": string,
                "answers": datasets.List(string),
                "answers_original": datasets.List(answer),
                "id_image": int64,
                "answer_type": string,
                "question_id": int64,
                "question": string,
                "image": datasets.Image(),
                "id": int64,
            }
        ),
        # HuggingFaceM4/VQAv2 (loading script) and its parquet copy lmms-lab/VQAv2
        "vqav2_m4": datasets.Features(
            {
                "question_type": string,
                "multiple_choice_answer": string,
                "answers": datasets.List(answer),
                "image_id": int64,
                "answer_type": string,
                "question_id": int64,
                "question": string,
                "image": datasets.Image(),
            }
        ),
        # umaru97/flickr30k_train_val_test (the nlphuji/flickr30k schema)
        "flickr30k": datasets.Features(
            {
                "image": datasets.Image(),
                "caption": datasets.List(string),
                "sentids": datasets.List(string),
                "split": string,
                "img_id": string,
                "filename": string,
            }
        ),
        # Ahren09/MMSoc_HatefulMemes: integer labels 0 / 1
        "hateful_int": datasets.Features(
            {"id": int64, "image": datasets.Image(), "text": string, "label": int64, "split": string}
        ),
        # Multimodal-Fatima/Hatefulmemes_*: a ClassLabel
        "hateful_classlabel": datasets.Features(
            {
                "image": datasets.Image(),
                "text": string,
                "label": datasets.ClassLabel(names=["not-hateful", "hateful"]),
                "id": int64,
            }
        ),
    }[kind]


def _png(i: int) -> dict:
    color, shape = list(COLORS)[i % len(COLORS)], SHAPES[i % len(SHAPES)]
    return {"bytes": shape_png(color, shape), "path": None}


def _save(path: Path, splits: dict[str, dict[str, list]], features) -> Path:
    """``save_to_disk`` a ``DatasetDict`` of ``{split: columns}`` with ``features``; returns ``path``."""
    import datasets

    datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(rows, features=features) for name, rows in splits.items()}
    ).save_to_disk(str(path))
    return path


def _fit(recipe: str, dataset: str, *extra: str):
    return cli_main(
        ["fit", "--config", str(HUB / recipe), *OFFLINE_CPU, "--data.init_args.dataset", dataset, *extra]
    )


# -- the recipes themselves -------------------------------------------------------------------------
RECIPE_SCHEMAS = {
    "vqav2.yaml": ("vqav2_fatima", ("image_column", "question_column", "answer_column")),
    "flickr30k_karpathy.yaml": ("flickr30k", ("image_column", "caption_column")),
    "hateful_memes.yaml": ("hateful_int", ("image_column", "text_column", "label_column")),
}


def test_every_hub_recipe_is_tested_here():
    assert {p.name for p in HUB.glob("*.yaml")} == set(RECIPE_SCHEMAS)


@pytest.mark.parametrize("recipe", sorted(RECIPE_SCHEMAS))
def test_hub_recipe_reads_its_datasets_columns_and_asks_for_gpus(recipe):
    config = yaml.safe_load((HUB / recipe).read_text())
    schema, roles = RECIPE_SCHEMAS[recipe]
    data = config["data"]["init_args"]
    # the columns the recipe reads are those of the Hub dataset's card
    assert {data[role] for role in roles} <= set(_features(schema))
    sources = data["dataset"].values() if isinstance(data["dataset"], dict) else [data["dataset"]]
    assert all(isinstance(s, str) and s.count("/") == 1 for s in sources)  # Hub ids
    trainer, image_encoder = config["trainer"], config["model"]["init_args"]["image_encoder"]
    assert (trainer["accelerator"], trainer["strategy"], trainer["precision"]) == ("gpu", "ddp", "bf16-mixed")
    assert trainer["devices"] > 1 and data["num_workers"] == 8 and data["image_size"] >= 384
    assert image_encoder["pretrained"] is True and "packaged_weights" not in image_encoder
    # loggers and checkpoints come from vlkit's run conventions, not from the recipe
    assert "logger" not in trainer and "callbacks" not in trainer


# -- a dataset published as one repository per split ---------------------------------------------------
def test_split_sources_mapping_takes_the_named_split_or_the_only_one(tmp_path):
    import datasets

    def split(tag: str):
        return datasets.Dataset.from_dict({"tag": [tag]})

    only = datasets.DatasetDict({"train": split("only")})
    several = datasets.DatasetDict({"validation": split("val"), "test": split("test")})
    folder = _save(tmp_path / "folder", {"train": {"tag": ["disk"]}}, None)
    data = load_dataset_dict({"train": str(folder), "validation": several, "test": only})
    assert {name: data[name]["tag"] for name in data} == {
        "train": ["disk"],
        "validation": ["val"],
        "test": ["only"],
    }
    with pytest.raises(ValueError, match="none named 'train'"):
        load_dataset_dict({"train": several})
    with pytest.raises(ValueError, match="empty mapping"):
        load_dataset_dict({})


def _write_arrow_stream(path: str, table) -> None:
    import pyarrow as pa

    with pa.ipc.new_stream(path, table.schema) as writer:
        writer.write_table(table)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json", ".jsonl", ".arrow", "saved"])
def test_a_single_data_file_or_saved_dataset_is_one_split(tmp_path, suffix):
    import datasets

    table = datasets.Dataset.from_dict({"q": ["what shape?", "what colour?"], "n": [1, 2]})
    path = tmp_path / f"part{suffix}"
    write = {
        ".parquet": table.to_parquet,
        ".csv": table.to_csv,
        ".json": lambda p: table.to_json(p, lines=False),
        ".jsonl": table.to_json,
        ".arrow": lambda p: _write_arrow_stream(p, table.data.table),
        "saved": table.save_to_disk,
    }[suffix]
    write(str(path))
    alone = load_dataset_dict(str(path))
    assert list(alone) == ["train"] and alone["train"]["q"] == table["q"] and alone["train"]["n"] == [1, 2]
    mapped = load_dataset_dict({"test": str(path)})
    assert list(mapped) == ["test"] and mapped["test"]["q"] == table["q"]


def test_vqa_trains_from_parquet_files_with_images(tmp_path):
    from tests.conftest import make_dataset_dict
    from vlkit.data import VQADataModule

    data = make_dataset_dict()
    files = {name: str(tmp_path / f"{name}.parquet") for name in data}
    for name, split in data.items():
        split.to_parquet(files[name])
    dm = VQADataModule(
        files, image_column="img", question_column="q", answer_column="answers", image_size=32, batch_size=4
    )
    dm.setup("fit")
    batch = next(iter(dm.test_dataloader()))
    assert batch.image.shape == (4, 3, 32, 32) and dm.has_split("test")


def test_an_unreadable_data_file_names_the_file(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"could not read the parquet file '.*broken\.parquet'"):
        load_dataset_dict(str(path))


# -- VQA v2 ---------------------------------------------------------------------------------------------
def _vqa_rows(layout: str, n: int, seed: int) -> dict[str, list]:
    """``n`` questions with ten human answers each, in the ``layout`` of ``_features``."""
    rows: dict[str, list] = {key: [] for key in _features(layout)}
    words = [*COLORS, *SHAPES]
    for i in range(n):
        truth = words[(i + seed) % len(words)]
        agree = (10, 3, 2, 1)[i % 4]  # humans agreeing: soft scores 1, 1, 2/3, 1/3
        given = [truth] * agree + [f"guess {k}" for k in range(10 - agree)]  # each other answer once
        records = [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(given)]
        common = Counter(given).most_common(1)[0][0]
        fields = {
            "question_type": "what color is the",
            "multiple_choice_answer": common,
            "answer_type": "other",
            "question_id": 1000 * seed + i,
            "question": f"what {'color' if i % 2 else 'shape'} is the thing number {i}?",
            "image": _png(i),
            "answers": given if layout == "vqav2_fatima" else records,
            "answers_original": records,
            "id_image": i,
            "image_id": i,
            "id": i,
        }
        for key, column in rows.items():
            column.append(fields[key])
    return rows


@pytest.mark.parametrize("layout", ["vqav2_fatima", "vqav2_m4"])
def test_vqav2_recipe_gives_soft_scores_of_the_ten_answers(layout, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    features = _features(layout)
    train = _vqa_rows(layout, 12, seed=0)
    val = _vqa_rows(layout, 6, seed=1)
    # one folder per split, as the recipe's two Hub repositories
    sources = {
        "train": str(_save(tmp_path / "VQAv2_train", {"train": train}, features)),
        "validation": str(_save(tmp_path / "VQAv2_validation", {"validation": val}, features)),
    }
    cli = _fit("vqav2.yaml", json.dumps(sources))
    dm = cli.datamodule
    assert dm.multi_answer and cli.model.hparams.multi_answer
    assert cli.trainer.global_step == 1 and "test/vqa_acc" in cli.trainer.callback_metrics
    index = {a: k for k, a in enumerate(dm.answers)}
    expected = torch.zeros(len(val["question"]), len(dm.answers))
    for row, cell in enumerate(val["answers"]):
        given = [a if isinstance(a, str) else a["answer"] for a in cell]
        for answer, count in Counter(given).items():
            if answer in index:
                expected[row, index[answer]] = min(count / 3, 1.0)
    for loader in (dm.val_dataloader(), dm.test_dataloader()):  # the recipe tests on the val split
        scores = torch.cat([batch.scores for batch in loader])
        assert torch.equal(scores, expected)
        assert {round(float(s), 4) for s in scores.max(1).values} == {1.0, 0.6667, 0.3333}
        # the official accuracy of the answer 10, 3, 2, 1 humans gave (each other answer given once)
        accuracy = torch.cat([batch.accuracy for batch in loader])
        assert {round(float(s), 4) for s in accuracy.max(1).values} == {1.0, 0.9, 0.6, 0.3}
    assert {"color", "shape"} <= set(dm.vocabulary)


# -- Flickr30k, Karpathy split ------------------------------------------------------------------------
def _flickr_rows(split: str, n: int, start: int) -> dict[str, list]:
    rows: dict[str, list] = {key: [] for key in _features("flickr30k")}
    for i in range(start, start + n):
        color, shape = list(COLORS)[i % len(COLORS)], SHAPES[i % len(SHAPES)]
        captions = [
            f"a {color} {shape} on white",
            f"the {shape} is {color}",
            f"one {color} {shape}",
            f"a {shape} that is {color} .",
            f"picture number {i} of a {shape}",
        ]
        rows["image"].append(_png(i))
        rows["caption"].append(captions)
        rows["sentids"].append([str(5 * i + k) for k in range(5)])
        rows["split"].append(split)
        rows["img_id"].append(str(i))
        rows["filename"].append(f"{1000 + i}.jpg")
    return rows


def test_flickr30k_recipe_trains_on_every_caption_and_scores_against_all_five(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    splits = {
        "train": _flickr_rows("train", 4, 0),
        "val": _flickr_rows("val", 3, 4),
        "test": _flickr_rows("test", 2, 7),
    }
    twin = _save(tmp_path / "flickr30k_train_val_test", splits, _features("flickr30k"))
    cli = _fit("flickr30k_karpathy.yaml", str(twin))
    dm = cli.datamodule
    assert cli.trainer.global_step == 1 and "test/bleu4" in cli.trainer.callback_metrics
    assert len(dm.train_dataloader().dataset) == 4 * 5  # one training sample per caption
    for name, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        references = [refs for batch in loader for refs in batch.references]
        assert references == [[c.strip() for c in captions] for captions in splits[name]["caption"]]


# -- Hateful Memes --------------------------------------------------------------------------------------
def _meme_rows(layout: str, labels: list[int], start: int, split: str) -> dict[str, list]:
    rows: dict[str, list] = {key: [] for key in _features(layout)}
    for k, label in enumerate(labels):
        i = start + k
        fields = {
            "id": 10000 + i,
            "image": _png(i),
            "text": f"{'awful' if label else 'lovely'} meme text number {i}",
            "label": label,
            "split": split,
        }
        for key, column in rows.items():
            column.append(fields[key])
    return rows


@pytest.mark.parametrize(
    ("layout", "classes"), [("hateful_int", ["0", "1"]), ("hateful_classlabel", ["not-hateful", "hateful"])]
)
def test_hateful_memes_recipe_reads_labels_and_weights_the_classes(layout, classes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_labels = [0, 0, 0, 0, 0, 1, 1, 0]  # 6 : 2, unbalanced as the real train split
    val_labels, test_labels = [1, 0, 1, 0], [0, 1, 1, 0]
    splits = {
        "train": _meme_rows(layout, train_labels, 0, "train"),
        "validation": _meme_rows(layout, val_labels, 8, "dev_seen"),
        "test": _meme_rows(layout, test_labels, 12, "test_seen"),
    }
    twin = _save(tmp_path / "hateful_memes", splits, _features(layout))
    # the packaged MiniLM stands in for bert-base-uncased (the Hub cannot be reached here)
    cli = _fit(
        "hateful_memes.yaml",
        str(twin),
        "--data.init_args.tokenizer_name",
        "sentence-transformers/all-MiniLM-L6-v2",
    )
    dm = cli.datamodule
    assert cli.trainer.global_step == 1 and "test/macro_f1" in cli.trainer.callback_metrics
    assert dm.classes == cli.model.hparams.classes == classes
    assert dm.class_weights == pytest.approx([8 / (2 * 6), 8 / (2 * 2)])  # balanced: N / (K n_c)
    for labels, loader in ((val_labels, dm.val_dataloader()), (test_labels, dm.test_dataloader())):
        batches = list(loader)
        assert torch.cat([b.label for b in batches]).tolist() == labels
        assert all(bool(b.text_mask.any(1).all()) for b in batches)  # every meme's text was read
