"""Checkpoints: self-contained (predict needs nothing but the file), exported as save_pretrained
folders that reload in a new process, and loaded safely (code is refused)."""

from __future__ import annotations

import functools
import json
import pickle
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import shape_png
from tests.subprocess_runs import ROOT, run_python
from tests.test_cli import TINY, TINY_CAPTIONS, TINY_SENTIMENT, short_fit
from vlkit.cli import cli_main, export_main, main, predict_main
from vlkit.tasks import load_checkpoint, load_task

# In a fresh process, with every way to fetch weights or tokenizer files from outside the
# checkpoint broken (no Hub, no packaged MiniLM, no packaged EfficientNet), predict each checkpoint.
OFFLINE_PREDICT = """
import json, sys
import vlkit.text.hf as hf, vlkit.vision.encoder as encoder

def unavailable(*args, **kwargs):
    raise RuntimeError("fetched weights or files from outside the checkpoint")

hf.resolve_hf_model = encoder.packaged_weights_file = unavailable
from vlkit.cli import predict_main

def summary(prediction):  # the caption, or the ranked (answer or class, probability) pairs
    if hasattr(prediction, "caption"):
        return prediction.caption
    return getattr(prediction, "answers", None) or prediction.probabilities

print(json.dumps([summary(predict_main(args)) for args in json.loads(sys.argv[1])]))
"""


class Exploit:
    """Unpickling this runs code: it writes the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_predict_needs_nothing_but_the_checkpoint(
    tiny_vqa_on_disk, tiny_captions_on_disk, tiny_sentiment_on_disk, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "red_circle.png"
    image.write_bytes(shape_png("red", "circle"))
    runs = {
        "vqa/easy_vqa_parallel": (tiny_vqa_on_disk, TINY, ["--question", "what color is the shape?"]),
        "captioning/emoji_sat": (tiny_captions_on_disk, TINY_CAPTIONS, []),
        "sentiment/emoji_minilm": (tiny_sentiment_on_disk, TINY_SENTIMENT, ["--text", "a lovely circle"]),
    }
    calls, expected = [], []
    for recipe, (data, overrides, extra) in runs.items():
        cli = short_fit(recipe, data, overrides)
        args = ["--ckpt_path", cli.trainer.checkpoint_callback.best_model_path, "--image", str(image), *extra]
        checkpoint = load_checkpoint(args[1])
        assert checkpoint["vlkit_task"] == recipe.split("/")[0]
        if recipe.startswith("sentiment"):  # the MiniLM configuration and tokenizer travel in the file
            files = checkpoint["vlkit_hf_files"]["sentence-transformers/all-MiniLM-L6-v2"]
            assert {"config.json", "tokenizer.json"} <= set(files)
            assert not any(name.endswith((".safetensors", ".bin")) for name in files)  # weights: state dict
        calls.append(args)
        prediction = predict_main(args)
        ranked = getattr(prediction, "answers", None) or getattr(prediction, "probabilities", None)
        expected.append(prediction.caption if ranked is None else ranked)
        folder = export_main(["--ckpt_path", args[1], "--out", str(tmp_path / "exported" / recipe)])
        assert {"model.safetensors", "config.json", "vlkit.json"} <= {p.name for p in folder.iterdir()}
        calls.append(
            ["--ckpt_path", str(folder), *args[2:]]
        )  # save_pretrained folder, read in the new process
        expected.append(expected[-1])
    done = run_python(["-c", OFFLINE_PREDICT, json.dumps(calls)], tmp_path, HF_HUB_OFFLINE="1")
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(got) == 6 and got[2] == got[3] == expected[2]  # the caption, from checkpoint and folder
    for offline, here in zip(got[:2] + got[4:], expected[:2] + expected[4:]):  # (name, probability) pairs
        assert [name for name, _ in offline] == [name for name, _ in here]
        assert [p for _, p in offline] == pytest.approx([p for _, p in here], abs=1e-6)


def test_a_checkpoint_holding_code_is_refused_not_run(tiny_vqa_on_disk, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.ckpt"
    torch.save(
        {"state_dict": {}, "hyper_parameters": {}, "vlkit_task": "vqa", "payload": Exploit(marker)}, evil
    )
    image = tmp_path / "image.png"
    image.write_bytes(shape_png("red", "circle"))

    with pytest.raises(
        pickle.UnpicklingError, match="is refused: it holds objects other than tensors and plain data"
    ):
        load_checkpoint(evil)
    with pytest.raises(pickle.UnpicklingError):
        load_task(evil)
    with pytest.raises(pickle.UnpicklingError):
        predict_main(["--ckpt_path", str(evil), "--image", str(image), "--question", "what color?"])
    recipe = str(ROOT / "recipes/vqa/easy_vqa_parallel.yaml")
    with pytest.raises(SystemExit) as stop:  # resuming training from it: a one-line error
        main(
            ["fit", "--config", recipe, "--data.init_args.dataset", str(tiny_vqa_on_disk), *TINY]
            + ["--trainer.max_epochs", "1", "--ckpt_path", str(evil)]
        )
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"vlkit fit: error: checkpoint '{evil}' is refused: it holds objects other than tensors" in err
    assert "Traceback" not in err
    assert not marker.exists()
    # the same file does run its code when loaded without weights_only: the test would catch it
    torch.load(evil, weights_only=False)
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"plain text, not a checkpoint"])
def test_an_empty_or_truncated_checkpoint_is_one_clear_error(
    tiny_vqa_on_disk, tmp_path, monkeypatch, capsys, content
):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "last.ckpt"
    broken.write_bytes(content)
    with pytest.raises(ValueError, match=rf"\({len(content)} bytes\) cannot be read: it is empty, truncated"):
        load_checkpoint(broken)
    recipe = str(ROOT / "recipes/vqa/easy_vqa_parallel.yaml")
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "fit",
                "--config",
                recipe,
                "--data.init_args.dataset",
                str(tiny_vqa_on_disk),
                *TINY,
                "--ckpt_path",
                str(broken),
            ]
        )
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "vlkit fit: error: checkpoint" in err and "Traceback" not in err


def test_load_task_explains_files_that_are_not_vlkit_checkpoints(tmp_path):
    plain = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="not a Lightning checkpoint of a vlkit task"):
        load_task(plain)
    # a checkpoint of the earlier format (a model builder and its flat arguments) is refused, saying why
    old = tmp_path / "old.ckpt"
    hparams = {
        "model": "vqa_small",
        "model_args": {"dim": 32},
        "vocabulary": ["<pad>", "<unk>"],
        "answers": ["a"],
    }
    torch.save({"state_dict": {}, "hyper_parameters": hparams, "vlkit_task": "vqa"}, old)
    with pytest.raises(
        ValueError, match=r"earlier vlkit \(format None.*Train it again with a current recipe"
    ):
        load_task(old)
    weird = tmp_path / "weird.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "vlkit_task": "audio"}, weird)
    with pytest.raises(
        ValueError, match=r"names the task 'audio'; vlkit's tasks are \['captioning', 'sentiment', 'vqa'\]"
    ):
        load_task(weird)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_task(tmp_path / "missing.ckpt")


def test_the_cli_asks_the_trainer_for_weights_only_loading(monkeypatch, tmp_path, tiny_vqa_on_disk):
    import pytorch_lightning as pl

    monkeypatch.chdir(tmp_path)
    seen = {}
    validate = pl.Trainer.validate

    @functools.wraps(validate)  # the CLI reads the signature for its arguments
    def record(self, *args, **kwargs):
        seen.update(kwargs)
        return []

    monkeypatch.setattr(pl.Trainer, "validate", record)
    recipe = str(ROOT / "recipes/vqa/easy_vqa_parallel.yaml")
    cli_main(["validate", "--config", recipe, "--data.init_args.dataset", str(tiny_vqa_on_disk), *TINY])
    assert seen["weights_only"] is True  # not torch's default, which an environment variable can turn off


def test_save_pretrained_round_trip_and_wrong_class(tmp_path):
    from tests.parts import VQA_PARTS
    from vlkit.tasks import SentimentTask, VQATask, load_pretrained

    task = VQATask(
        **VQA_PARTS,
        vocabulary=["<pad>", "<unk>", "what"],
        answers=["a", "b"],
        preprocessing={"image_size": 32},
    ).eval()
    task.save_pretrained(tmp_path / "vqa")
    config = json.loads((tmp_path / "vqa" / "config.json").read_text())
    assert config["answers"] == ["a", "b"] and config["image_encoder"]["dim"] == 32
    assert config["fusion"]["name"] == "parallel_coattention" and config["preprocessing"]["image_size"] == 32
    image, ids = torch.rand(2, 3, 32, 32), torch.tensor([[2], [1]])
    for loaded in (VQATask.from_pretrained(tmp_path / "vqa"), load_pretrained(tmp_path / "vqa")):
        assert type(loaded) is VQATask and not loaded.training
        assert torch.equal(loaded(image, ids).logits, task(image, ids).logits)
    with pytest.raises(ValueError, match="holds a 'vqa' task"):
        SentimentTask.from_pretrained(tmp_path / "vqa")
    with pytest.raises(FileNotFoundError, match="no vlkit.json"):
        load_pretrained(tmp_path)


def test_save_pretrained_round_trip_of_tied_decoder_weights(tmp_path):
    from vlkit.tasks import CaptioningTask
    from vlkit.text import WordCaptionTokenizer

    vocabulary = WordCaptionTokenizer.from_corpus(["a red circle", "a blue square"]).vocabulary
    task = CaptioningTask(
        image_encoder={"backbone": "resnet10t", "feature_index": 1, "dim": 16},
        decoder={"name": "transformer", "dim": 16, "tie_embeddings": True},
        vocabulary=vocabulary,
        preprocessing={"image_size": 32},
    ).eval()
    decoder = task.model.decoder
    assert decoder.out.weight is decoder.embedding.weight  # one tensor, saved once by safetensors
    task.save_pretrained(tmp_path / "captioner")
    loaded = CaptioningTask.from_pretrained(tmp_path / "captioner")
    assert loaded.model.decoder.out.weight is loaded.model.decoder.embedding.weight
    image = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded.generate(image).tokens, task.generate(image).tokens)


def test_a_checkpoint_cannot_ask_for_remote_code_or_carry_code_files(tmp_path):
    from vlkit.tasks.checkpoint import write_hf_files
    from vlkit.text import TextEncoderConfig

    with pytest.raises(ValueError, match=r"takes no argument\(s\) \['trust_remote_code'\]"):
        TextEncoderConfig.parse({"name": "hf", "trust_remote_code": True})
    with pytest.raises(ValueError, match="carries configuration, not code"):
        write_hf_files({"some/model": {"modeling_evil.py": b"import os"}}, tmp_path)
    assert not list(tmp_path.rglob("*.py"))


def _code_entry(marker: Path) -> dict:
    """What jsonargparse would instantiate: a shell command that writes ``marker``."""
    return {"class_path": "subprocess.Popen", "init_args": {"args": f"touch {marker}", "shell": True}}


FORGERIES = {  # where the code-naming entry is put in the hyper-parameters, and the path the error names
    "a part option": (lambda h, e: h["image_encoder"].__setitem__("x", e), "image_encoder.x.class_path"),
    "a whole part": (lambda h, e: h.__setitem__("fusion", e), "fusion.class_path"),
    "the optimisation": (lambda h, e: h.__setitem__("optimization", e), "optimization.class_path"),
    "the preprocessing": (lambda h, e: h.__setitem__("preprocessing", e), "preprocessing.class_path"),
    "a new argument": (lambda h, e: h.__setitem__("extra", e), "extra.class_path"),
    "a vocabulary entry": (lambda h, e: h["answers"].__setitem__(0, e), r"answers\[0\].class_path"),
    "deep inside": (lambda h, e: h["optimization"].__setitem__("x", [{"y": e}]), r"optimization.x\[0\].y"),
    "the model class": (lambda h, e: h.__setitem__("_class_path", "subprocess.Popen"), "subprocess.Popen"),
}


@pytest.mark.parametrize("where", FORGERIES)
def test_hyperparameters_that_name_code_are_refused_on_every_path(
    where, tiny_vqa_on_disk, tmp_path, monkeypatch, capsys
):
    """A checkpoint that torch.load(weights_only=True) accepts, with a jsonargparse class_path in its
    hyper-parameters: refused by load_task, predict, export, from_pretrained and --ckpt_path."""
    from vlkit.cli import main
    from vlkit.tasks import VQATask

    monkeypatch.chdir(tmp_path)
    short_fit("vqa/easy_vqa_parallel", tiny_vqa_on_disk, TINY, "--trainer.limit_val_batches", "1")
    good = next(tmp_path.glob("runs/easy_vqa_parallel/version_0/checkpoints/last.ckpt"))
    marker = tmp_path / "pwned.txt"
    forge, named = FORGERIES[where]
    checkpoint = torch.load(good, weights_only=True)
    forge(checkpoint["hyper_parameters"], _code_entry(marker))
    evil = tmp_path / "evil.ckpt"
    torch.save(checkpoint, evil)
    image = tmp_path / "image.png"
    image.write_bytes(shape_png("red", "circle"))
    refused = rf"holds 'class_path' at '{named}|names the model class '{named}'"

    with pytest.raises(ValueError, match=refused):
        load_task(evil)
    with pytest.raises(ValueError, match=refused):
        VQATask.load_from_checkpoint(evil)
    for argv in (
        ["predict", "--ckpt_path", str(evil), "--image", str(image), "--question", "what color?"],
        ["export", "--ckpt_path", str(evil), "--out", str(tmp_path / "export")],
        ["test", "--config", str(ROOT / "recipes/vqa/easy_vqa_parallel.yaml"), "--ckpt_path", str(evil)]
        + ["--data.init_args.dataset", str(tiny_vqa_on_disk), *TINY],
    ):
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2, argv[0]
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"vlkit {argv[0]}: error:") and len(error.splitlines()) == 1, error
        assert "Traceback" not in error
    # an export folder whose config.json was edited the same way
    main(["export", "--ckpt_path", str(good), "--out", str(tmp_path / "folder")])
    config_path = tmp_path / "folder" / "config.json"
    config = json.loads(config_path.read_text())
    if where != "the model class":  # config.json has no _class_path: any class_path key is refused
        forge(config, _code_entry(marker))
        config_path.write_text(json.dumps(config))
        with pytest.raises(ValueError, match=refused):
            VQATask.from_pretrained(str(tmp_path / "folder"))
    assert not marker.exists()


def test_export_writes_a_model_card_with_the_runs_test_metrics_and_normal_file_modes(
    tiny_vqa_on_disk, tmp_path, monkeypatch
):
    import csv
    import os

    monkeypatch.chdir(tmp_path)
    short_fit("vqa/easy_vqa_parallel", tiny_vqa_on_disk, TINY, "--trainer.limit_val_batches", "1")
    export_main(["--ckpt_path", "runs/easy_vqa_parallel", "--out", str(tmp_path / "export")])
    card = (tmp_path / "export" / "README.md").read_text()
    with open(tmp_path / "runs/easy_vqa_parallel/version_0/metrics.csv", newline="") as file:
        tested = [row["test/vqa_acc"] for row in csv.DictReader(file) if row.get("test/vqa_acc")]
    assert "More Information Needed" not in card and "# VQATask (vqa), trained with vlkit" in card
    assert "- fusion: `parallel_coattention`" in card and "load_pretrained(" in card
    assert f"| test/vqa_acc | {float(tested[-1]):.4f} |" in card
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "export").rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o666 & ~mask}, modes  # model.safetensors too (safetensors writes 0o600)
    with pytest.raises(ValueError, match="--out must name a folder"):
        export_main(["--ckpt_path", "runs/easy_vqa_parallel", "--out", ""])
    # with the network as an ONNX graph, checked against PyTorch and described in the card
    export_main(
        ["--ckpt_path", "runs/easy_vqa_parallel", "--out", str(tmp_path / "onnx"), "--format", "onnx"]
    )
    card = (tmp_path / "onnx" / "README.md").read_text()
    assert "## The network as a graph (onnx)" in card and "- `token_ids`: (b, " in card
    assert float(re.search(r"within (\S+) of", card).group(1)) < 1e-4
    assert (tmp_path / "onnx" / "model.onnx").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_mapped_look_at_a_checkpoint_reads_the_same_and_legacy_files_whole(tmp_path):
    state = {"hyper_parameters": {"lr": 0.1}, "state_dict": {"w": torch.arange(6.0)}}
    modern, legacy = tmp_path / "modern.ckpt", tmp_path / "legacy.ckpt"
    torch.save(state, modern)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    for path in (modern, legacy):
        loaded = load_checkpoint(path, mmap=True)
        assert loaded["hyper_parameters"] == {"lr": 0.1} and torch.equal(
            loaded["state_dict"]["w"], torch.arange(6.0)
        )
