"""The vlkit CLI: every recipe parses and runs a fast step; fit → predict from a checkpoint."""

from __future__ import annotations

import csv
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import shape_png
from vlkit.cli import cli_main, main, predict_main

# recipes/hub: GPU + Hub data, run on Hub-schema twins in tests/test_hub_recipes.py
RECIPES = sorted(
    p for p in (Path(__file__).parents[1] / "recipes").glob("**/*.yaml") if p.parent.name != "hub"
)
COMMON = [
    "--data.init_args.image_column",
    "img",
    "--data.init_args.image_size",
    "32",
    "--data.init_args.num_workers",
    "0",
    "--data.init_args.batch_size",
    "8",
    "--trainer.enable_progress_bar",
    "false",
]
TINY = [*COMMON, "--data.init_args.question_column", "q", "--data.init_args.answer_column", "answers"]
TINY_CAPTIONS = [*COMMON, "--data.init_args.caption_column", "captions"]
TINY_SENTIMENT = [
    *COMMON,
    "--data.init_args.text_column",
    "sentence",
    "--data.init_args.label_column",
    "polarity",
]


def short_fit(recipe: str, data: Path, overrides: list[str], *extra: str):
    """``vlkit fit`` of ``recipes/<recipe>.yaml`` for one epoch of two batches on ``data``."""
    args = ["fit", "--config", str(Path(__file__).parents[1] / "recipes" / f"{recipe}.yaml")]
    args += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    return cli_main([*args, "--data.init_args.dataset", str(data), *extra, *overrides])


def test_there_are_recipes():
    assert {p.name for p in RECIPES} >= {"easy_vqa_parallel.yaml", "easy_vqa_alternating.yaml"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_runs_one_fast_step(
    recipe, tiny_vqa_on_disk, tiny_captions_on_disk, tiny_sentiment_on_disk, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    task = recipe.parent.name
    data, overrides, metric = {
        "vqa": (tiny_vqa_on_disk, TINY, "test/vqa_acc"),
        "captioning": (tiny_captions_on_disk, TINY_CAPTIONS, "test/cider_d"),
        "sentiment": (tiny_sentiment_on_disk, TINY_SENTIMENT, "test/macro_f1"),
    }[task]
    cli = cli_main(
        [
            "fit",
            "--config",
            str(recipe),
            "--trainer.fast_dev_run",
            "1",
            "--data.init_args.dataset",
            str(data),
            *overrides,
        ]
    )
    chain, path = [], recipe  # the recipe and its bases, root last
    while path is not None:
        chain.append(yaml.safe_load(path.read_text()))
        path = path.parent / chain[-1]["base"] if "base" in chain[-1] else None
    model_args = {}
    for config in reversed(chain):
        model_args.update(config.get("model", {}).get("init_args", {}))
    assert type(cli.model).__name__ == chain[-1]["model"]["class_path"].rsplit(".", 1)[1]
    for part, value in model_args.items():
        if part in ("image_encoder", "text_encoder", "fusion", "head", "decoder"):  # as the recipe says
            saved = cli.model.hparams[part]
            assert {k: saved[k] for k in value} == value or value.get("name") == "hf", (part, saved)
    assert cli.model.hparams.preprocessing["image_size"] == 32  # linked from the data, with the vocabulary
    # vocabularies were linked from the data into the task
    assert cli.model.hparams.vocabulary == cli.datamodule.vocabulary
    if task == "vqa":
        assert cli.model.hparams.answers == cli.datamodule.answers
    if task == "sentiment":
        assert cli.model.hparams.classes == cli.datamodule.classes == ["positive", "negative", "neutral"]
        assert cli.model.hparams.class_weights == cli.datamodule.class_weights
        assert cli.model.hparams.tokenizer_name == cli.datamodule.tokenizer_name
    assert cli.trainer.global_step == 1
    assert metric in cli.trainer.callback_metrics  # test_after_fit ran


def test_fit_writes_one_run_folder_and_predict_answers(tiny_vqa_on_disk, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    limits = ("--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1")
    cli = short_fit("vqa/easy_vqa_parallel", tiny_vqa_on_disk, TINY, *limits)
    run_dirs = [p for p in (tmp_path / "runs").glob("*/version_*") if p.is_dir()]
    assert len(run_dirs) == 1, run_dirs  # CSV and TensorBoard share one folder
    run = run_dirs[0]
    assert (run / "metrics.csv").is_file() and list(run.glob("events.out.tfevents.*"))
    with open(run / "metrics.csv") as f:
        assert "val/vqa_acc" in next(csv.reader(f))
    best = Path(cli.trainer.checkpoint_callback.best_model_path).resolve()
    # each run's checkpoints in its own version folder, so no run overwrites another's
    assert best.parent == run / "checkpoints" and (run / "checkpoints" / "last.ckpt").is_file()
    assert run.parent == tmp_path / "runs" / "easy_vqa_parallel" and best.name == "best-epoch=0.ckpt"

    image = tmp_path / "red_circle.png"
    image.write_bytes(shape_png("red", "circle"))
    prediction = predict_main(
        ["--ckpt_path", str(best), "--image", str(image), "--question", "what color is the shape?", "--top_k", "3"]
    )
    answers = prediction.answers
    assert len(answers) == 3 and prediction.answer == answers[0][0]
    assert all(a in cli.datamodule.answers for a, _ in answers)
    probs = [p for _, p in answers]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    out = capsys.readouterr().out
    assert "what color is the shape?" in out and answers[0][0] in out

    with pytest.raises(ValueError, match="non-empty string"):
        predict_main(["--ckpt_path", str(best), "--image", str(image), "--question", "  "])
    with pytest.raises(ValueError, match="--question"):
        predict_main(["--ckpt_path", str(best), "--image", str(image)])
    with pytest.raises(FileNotFoundError, match="image"):
        predict_main(["--ckpt_path", str(best), "--image", str(tmp_path / "nope.png"), "--question", "what?"])


def test_fit_then_predict_a_caption_with_attention_maps(tiny_captions_on_disk, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    limits = ("--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1")
    cli = short_fit("captioning/emoji_sat", tiny_captions_on_disk, TINY_CAPTIONS, *limits)
    run = next(p for p in (tmp_path / "runs").glob("emoji_sat/version_*") if p.is_dir())
    with open(run / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert {"val/bleu4", "val/cider_d", "val/rouge_l", "test/bleu4"} <= set(header)
    written = json.loads((run / "test_captions.json").read_text())
    assert len(written["captions"]) == 8 and set(written["captions"][0]) == {"caption", "references"}
    assert written["scores"]["cider_d"] == pytest.approx(float(cli.trainer.callback_metrics["test/cider_d"]))

    best = cli.trainer.checkpoint_callback.best_model_path
    image = tmp_path / "red_circle.png"
    image.write_bytes(shape_png("red", "circle"))
    picture = tmp_path / "out" / "attention.png"
    caption = predict_main(["--ckpt_path", best, "--image", str(image), "--save_attention", str(picture)]).caption
    assert isinstance(caption, str) and caption in capsys.readouterr().out
    assert all(word in cli.datamodule.vocabulary for word in caption.split())
    from PIL import Image

    with Image.open(picture) as drawn:
        assert drawn.format == "PNG" and drawn.width > 32


@pytest.mark.parametrize(
    ("recipe", "modality"),
    [("emoji_crossmodal", "both"), ("emoji_minilm", "both"), ("emoji_crossmodal", "image")],
)
def test_fit_then_predict_sentiment_class_probabilities(
    recipe, modality, tiny_sentiment_on_disk, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    text_args = ("--data.init_args.max_text_length", "2", "--model.init_args.modality", modality)
    cli = short_fit(f"sentiment/{recipe}", tiny_sentiment_on_disk, TINY_SENTIMENT, *text_args)
    run = next(p for p in (tmp_path / "runs").glob(f"{recipe}/version_*") if p.is_dir())
    saved = json.loads((run / "test_confusion_matrix.json").read_text())
    assert saved["classes"] == ["positive", "negative", "neutral"]
    assert sum(map(sum, saved["confusion_matrix"])) == 24

    best = cli.trainer.checkpoint_callback.best_model_path
    image = tmp_path / "green_circle.png"
    image.write_bytes(shape_png("green", "circle"))
    capsys.readouterr()
    ranked = predict_main(["--ckpt_path", best, "--image", str(image), "--text", "a lovely circle"]).probabilities
    assert sorted(c for c, _ in ranked) == ["negative", "neutral", "positive"]
    probs = [p for _, p in ranked]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0)
    out = capsys.readouterr().out
    assert "a lovely circle" in out and all(f"{p:.4f}" in out for p in probs)

    # the same probabilities as the trained model on the text cut to the DataModule's max_text_length
    model = cli.model.eval()
    ids = torch.tensor([cli.datamodule.tokenizer.encode("a lovely circle", 2)])
    from vlkit.data import image_transform, load_image

    image_tensor = image_transform(cli.datamodule.image_size, train=False, augment=False)(
        load_image(str(image))
    )
    with torch.no_grad():
        expected = model(image_tensor[None], ids, ids >= 0).logits.softmax(-1)[0]
    assert dict(ranked) == pytest.approx(dict(zip(model.classes, expected.tolist())), abs=1e-6)
    if modality == "image":  # reads no text: --text may be left out
        alone = predict_main(["--ckpt_path", best, "--image", str(image)]).probabilities
        assert dict(alone) == pytest.approx(dict(ranked))
    else:
        with pytest.raises(ValueError, match="--text"):
            predict_main(["--ckpt_path", best, "--image", str(image)])


def test_main_routes_predict_and_reports_a_missing_checkpoint_without_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["predict", "--ckpt_path", str(tmp_path / "x.ckpt"), "--image", "y.png", "--question", "what?"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "vlkit predict: error: checkpoint" in err and "does not exist" in err and "Traceback" not in err


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "vlkit.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0 and "fit" in result.stdout and "validate" in result.stdout


def test_a_whole_number_of_batches_stays_a_number_of_batches():
    # in a fresh process, as `vlkit fit` starts: what was imported before the Trainer decides how
    # jsonargparse reads its Optional[Union[int, float]] limits (see vlkit/cli/__init__.py)
    recipe = Path(__file__).parents[1] / "recipes/vqa/easy_vqa_parallel.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "vlkit", "fit", "--config", str(recipe), "--print_config"]
        + ["--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "0.5"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    trainer = yaml.safe_load(result.stdout)["trainer"]
    assert type(trainer["limit_train_batches"]) is int and trainer["limit_train_batches"] == 1
    assert trainer["limit_val_batches"] == 0.5


ALL_RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("**/*.yaml"))
PARTS = {"image_encoder", "text_encoder", "fusion", "head", "decoder"}


@pytest.mark.parametrize("recipe", ALL_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_print_config_shows_every_argument_of_every_part(recipe, capsys):
    with pytest.raises(SystemExit) as done:
        cli_main(["fit", "--config", str(recipe), "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    init_args = printed["model"]["init_args"]
    assert "model_args" not in init_args and PARTS & set(init_args)
    for part in PARTS & set(init_args):
        config = init_args[part]
        if config is None:
            continue
        registry = {
            "image_encoder": "vlkit.vision.IMAGE_ENCODERS",
            "text_encoder": "vlkit.text.TEXT_ENCODERS",
            "fusion": "vlkit.fusion.FUSIONS",
            "head": "vlkit.models.HEADS",
            "decoder": "vlkit.models.DECODERS",
        }[part]
        module, name = registry.rsplit(".", 1)
        builders = getattr(__import__(module, fromlist=[name]), name)
        # the builder's name and every argument it takes, defaults included
        assert set(config) == {"name", *builders.parameters(config["name"])}, (part, config)
    assert set(init_args["optimization"]) >= {"lr", "weight_decay", "warmup_fraction", "min_lr_ratio"}


def test_a_typo_in_a_part_is_an_error_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = str(Path(__file__).parents[1] / "recipes/vqa/easy_vqa_mcan.yaml")
    with pytest.raises(SystemExit) as done:
        cli_main(["fit", "--config", recipe, "--model.init_args.fusion.dpth", "3"])
    assert done.value.code == 2
    assert "fusion 'mcan' takes no argument(s) ['dpth']" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing was built or written
    with pytest.raises(SystemExit):
        cli_main(
            ["fit", "--config", recipe, "--model.init_args.image_encoder", "{backbone: resnet10t, dim: wide}"]
        )
    assert "image_encoder 'timm'" in capsys.readouterr().err


def test_a_recipe_extends_its_base_and_one_part_argument_can_change(capsys):
    recipe = str(Path(__file__).parents[1] / "recipes/vqa/easy_vqa_mcan.yaml")
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", recipe, "--model.init_args.fusion.depth", "3", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    init_args = printed["model"]["init_args"]
    assert (
        printed["base"] is None and printed["run_name"] == "easy_vqa_mcan"
    )  # the printed config stands alone
    assert init_args["fusion"]["name"] == "mcan" and init_args["fusion"]["depth"] == 3
    assert init_args["fusion"]["num_heads"] == 8  # the recipe's, kept
    assert init_args["image_encoder"]["backbone"] == "efficientnet_lite0"  # from the base recipe


def test_expand_recipe_bases_loads_each_base_first(tmp_path):
    from vlkit.cli import expand_recipe_bases

    (tmp_path / "a.yaml").write_text("trainer: {max_epochs: 1}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\n")
    (tmp_path / "sub" / "c.yaml").write_text("base: b.yaml\nseed_everything: 3\n")
    c = str(tmp_path / "sub" / "c.yaml")
    expanded = expand_recipe_bases(["fit", f"--config={c}", "--trainer.max_epochs", "2"])
    assert expanded == [
        "fit",
        "--run_name",
        "c",
        "--config",
        str(tmp_path / "sub" / ".." / "a.yaml"),
        "--config",
        "{}\n",  # b.yaml without its base: nothing
        "--config",
        "seed_everything: 3\n",  # c.yaml without its base
        "--trainer.max_epochs",
        "2",
    ]
    assert expand_recipe_bases(["-c", str(tmp_path / "a.yaml")]) == ["--config", str(tmp_path / "a.yaml")]
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="extend each other in a circle"):
        expand_recipe_bases(["--config", str(tmp_path / "loop.yaml")])
    (tmp_path / "lost.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ValueError, match="extends .*nowhere.yaml.*which does not exist"):
        expand_recipe_bases(["--config", str(tmp_path / "lost.yaml")])
    assert expand_recipe_bases(["--config", "{trainer: {max_epochs: 1}}"]) == [
        "--config",
        "{trainer: {max_epochs: 1}}",
    ]


def test_without_a_progress_bar_each_epoch_logs_one_line(tiny_vqa_on_disk, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="vlkit.cli.runs")
    short_fit("vqa/easy_vqa_parallel", tiny_vqa_on_disk, TINY, "--trainer.max_epochs", "2")
    lines = [r.getMessage() for r in caplog.records if r.name == "vlkit.cli.runs"]
    assert len(lines) == 2, lines
    for epoch, line in enumerate(lines):
        assert re.fullmatch(
            rf"epoch {epoch}/2  train/exact_match \S+  train/loss \S+  .*val/loss \S+  val/skipped \S+  "
            r"val/vqa_acc \S+  \d+\.\d s",
            line,
        ), line


def test_runs_never_overwrite_each_other_and_last_resumes_the_newest(
    tiny_vqa_on_disk, tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)
    limits = ("--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1")
    short_fit("vqa/easy_vqa_parallel", tiny_vqa_on_disk, TINY, *limits)
    first = tmp_path / "runs/easy_vqa_parallel/version_0/checkpoints/last.ckpt"
    before = first.read_bytes()
    short_fit("vqa/easy_vqa_parallel", tiny_vqa_on_disk, TINY, *limits, "--trainer.limit_train_batches", "1")
    second = tmp_path / "runs/easy_vqa_parallel/version_1/checkpoints/last.ckpt"
    assert first.read_bytes() == before and second.is_file()  # the second run kept the first's
    assert not (tmp_path / "runs/easy_vqa_parallel/checkpoints").exists()
    caplog.set_level(logging.INFO, logger="vlkit.cli.train")
    short_fit("vqa/easy_vqa_parallel", tiny_vqa_on_disk, TINY, *limits, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert f"--ckpt_path last: resuming from {Path('runs/easy_vqa_parallel/version_1/checkpoints/last.ckpt')}" in caplog.text
    # a run folder names its newest last.ckpt for predict and export
    image = tmp_path / "red_circle.png"
    image.write_bytes(shape_png("red", "circle"))
    prediction = predict_main(["--ckpt_path", "runs/easy_vqa_parallel", "--image", str(image), "--question", "what color is it?"])
    assert prediction.answers
    with pytest.raises(FileNotFoundError, match="neither an export folder"):
        predict_main(["--ckpt_path", str(tmp_path), "--image", str(image), "--question", "what color is it?"])


@pytest.mark.parametrize(
    "option, message",
    [
        (["--data.init_args.batch_size", "0"], "batch_size, image_size and min_word_freq must be >= 1"),
        (["--model.init_args.optimization.lr", "-1"], "optimization needs lr > 0"),
        (["--data.init_args.dataset", "./no/such/folder"], "looks like a local path but does not exist"),
    ],
)
def test_a_users_mistake_is_one_line_and_exit_code_2(option, message, tmp_path, monkeypatch, capsys):
    from vlkit.cli import main

    monkeypatch.chdir(tmp_path)
    recipe = str(Path(__file__).parents[1] / "recipes/vqa/easy_vqa_parallel.yaml")
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", recipe, *option, "--trainer.fast_dev_run", "true"])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("vlkit fit: error: ") and message in error and error.endswith("(--debug shows where)")
    # --debug (or VLKIT_DEBUG=1) shows the exception itself, with its traceback
    with pytest.raises(Exception, match=r"batch_size|lr > 0|local path|Union") as raised:
        main(["--debug", "fit", "--config", recipe, *option, "--trainer.fast_dev_run", "true"])
    assert not isinstance(raised.value, SystemExit)


def test_an_error_raised_outside_vlkit_keeps_its_traceback(monkeypatch):
    from vlkit import cli

    def broken(args):
        return {}["missing"]  # a bug, not a user's mistake: KeyError raised here, in the tests

    monkeypatch.setattr(cli, "export_main", broken)
    with pytest.raises(KeyError):
        cli.main(["export", "--ckpt_path", "x"])
    assert cli.user_error(ValueError("made here, in the tests")) is None


def test_vlkit_help_lists_every_command(capsys):
    from vlkit.cli import VLKitCLI, main

    for argv in ([], ["--help"]):
        main(argv)
        shown = capsys.readouterr().out
        for command in ("fit", "validate", "test", "predict", "export", "report"):
            assert f"\n  {command} " in shown, command
    assert set(VLKitCLI.subcommands()) == {"fit", "validate", "test"}  # predict is vlkit's own


@pytest.mark.parametrize("option", ["--top_k", "--beam_size", "--max_length"])
def test_predict_options_below_one_are_refused_before_loading(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:  # the checkpoint does not even exist: the option comes first
        main(["predict", "--ckpt_path", str(tmp_path / "x.ckpt"), "--image", "y.png", option, "0"])
    assert stop.value.code == 2
    assert f"vlkit predict: error: {option} must be >= 1, got 0" in capsys.readouterr().err


def test_fit_without_a_test_split_says_so_before_training_and_does_not_fail(tmp_path, monkeypatch, caplog):
    import datasets

    from tests.conftest import make_dataset_dict

    monkeypatch.chdir(tmp_path)
    full = make_dataset_dict(multi=False)
    datasets.DatasetDict({"train": full["train"], "validation": full["validation"]}).save_to_disk("no_test")
    caplog.set_level(logging.WARNING, logger="vlkit.cli.train")
    cli = short_fit("vqa/easy_vqa_parallel", tmp_path / "no_test", TINY, "--trainer.limit_val_batches", "1")
    assert "the dataset has no test split 'test': fit will not test afterwards" in caplog.text
    assert cli.trainer.state.finished and not any(k.startswith("test/") for k in cli.trainer.callback_metrics)


def test_recipes_ship_with_the_package_and_are_found_outside_a_checkout(tmp_path, monkeypatch, capsys):
    from vlkit.cli import main
    from vlkit.cli.train import RECIPES, expand_recipe_bases, list_recipes

    monkeypatch.chdir(tmp_path)  # no recipes/ folder here
    names = list_recipes()
    assert "recipes/vqa/easy_vqa_parallel.yaml" in names and len(names) == len(ALL_RECIPES)
    expanded = expand_recipe_bases(["fit", "--config", "recipes/vqa/easy_vqa_mcan.yaml"])
    assert str(RECIPES / "vqa/easy_vqa_parallel.yaml") in expanded  # its base, from the package
    assert expanded[expanded.index("--run_name") + 1] == "easy_vqa_mcan"
    assert expand_recipe_bases(["--config", "recipes/vqa/missing.yaml"]) == ["--config", "recipes/vqa/missing.yaml"]
    main(["recipes"])
    assert "  recipes/vqa/easy_vqa_mcan.yaml" in capsys.readouterr().out


def test_optimizer_and_lr_scheduler_options_replace_the_tasks_choice(tiny_vqa_on_disk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    limits = ("--trainer.limit_val_batches", "1", "--test_after_fit", "false")
    default = short_fit("vqa/easy_vqa_parallel", tiny_vqa_on_disk, TINY, *limits)
    (adamw,) = default.trainer.optimizers
    assert type(adamw).__name__ == "AdamW" and len(adamw.param_groups) > 1  # the task's groups
    with pytest.warns(UserWarning, match="configure_optimizers` will be overridden"):
        chosen = short_fit(
            "vqa/easy_vqa_parallel",
            tiny_vqa_on_disk,
            TINY,
            *limits,
            *("--optimizer", "SGD", "--optimizer.lr", "0.05", "--optimizer.momentum", "0.9"),
            *("--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "1", "--lr_scheduler.gamma", "0.5"),
        )
    (sgd,) = chosen.trainer.optimizers
    assert type(sgd).__name__ == "SGD" and sgd.param_groups[0]["momentum"] == 0.9
    assert sgd.param_groups[0]["initial_lr"] == 0.05 and sgd.param_groups[0]["lr"] == pytest.approx(0.025)
    assert type(chosen.trainer.lr_scheduler_configs[0].scheduler).__name__ == "StepLR"
