"""The ``vlkit`` command line.

- ``vlkit fit | validate | test --config recipes/<task>/<name>.yaml`` — Lightning's CLI
  (every ``--trainer.*``, ``--model.*``, ``--data.*`` option can override the recipe).
  ``fit`` evaluates the best checkpoint on the test split afterwards unless
  ``--test_after_fit false``.
- ``vlkit export --ckpt run.ckpt --out folder`` writes a ``save_pretrained`` folder (Hugging
  Face conventions: ``model.safetensors`` + ``config.json``), which ``--ckpt`` also accepts.
- ``vlkit predict --ckpt run/checkpoints/best.ckpt --image img.png --question "..."``
  prints the top answers of a trained VQA checkpoint with their probabilities;
  ``vlkit predict --ckpt caption.ckpt --image img.png`` prints the caption of a captioning
  checkpoint; ``vlkit predict --ckpt sentiment.ckpt --image img.png --text "..."`` prints the
  class probabilities of a sentiment checkpoint. ``--save-attention out.png`` draws what the
  model attended to (:mod:`vlkit.viz`): the attention map of each generated word, or the region
  and word attention, the words × regions matrix and the STN grid, those the model has.
- ``vlkit report runs/<recipe>[/version_N] [--out DIR]`` draws the learning curves of a run
  (``learning_curves.png``) and tabulates the best epoch's validation and test metrics
  (``summary.md``, ``summary.json``); see :mod:`vlkit.report`.

Progress: a Rich progress bar when stdout is a terminal, plain logs when it is not or when the
``CI`` environment variable is set (:func:`progress_bar_choice`); ``--trainer.enable_progress_bar``
and a progress-bar callback in ``--trainer.callbacks`` override this.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal

import torch
from pytorch_lightning.cli import LightningCLI

from vlkit.checkpoint import load_pretrained, load_task, rebuilding_from_checkpoint

__all__ = ["VLKitCLI", "cli_main", "export_main", "main", "predict_main", "progress_bar_choice"]


class VLKitCLI(LightningCLI):
    """LightningCLI whose DataModule tells the task its data-dependent sizes.

    The question vocabulary, the answer list and the answer mode are built by the
    DataModule from the training split and linked into the task at instantiation, so
    recipes never hard-code them and checkpoints carry them.
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="after `fit`, evaluate the best checkpoint on the test split",
        )
        for source in ("vocabulary", "answers", "multi_answer", "tokenizer_name", "classes", "class_weights"):
            parser.link_arguments(f"data.{source}", f"model.init_args.{source}", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """Read a ``--ckpt_path`` checkpoint with ``torch.load(weights_only=True)`` (code in it is
        refused) unless ``--weights_only false`` is given for a trusted file."""
        config = self.config.get(self.subcommand) if self.subcommand else None
        if config is not None and "weights_only" in config and config["weights_only"] is None:
            config["weights_only"] = True

    def instantiate_trainer(self, **kwargs):
        """Build the trainer with vlkit's progress display (:func:`progress_bar_choice`: a Rich
        bar in a terminal, plain logs otherwise), then put every logger's files in the first
        logger's run folder."""
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        kwargs.update(_progress_bar_overrides(config.get("enable_progress_bar"), config.get("callbacks")))
        trainer = super().instantiate_trainer(**kwargs)
        _share_run_folder(trainer.loggers)
        return trainer

    def after_fit(self) -> None:
        if not self.config_init[self.subcommand].get("test_after_fit", True):
            return
        if self.trainer.fast_dev_run:
            self.trainer.test(self.model, datamodule=self.datamodule)
            return
        callback = self.trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)


def _in_ci() -> bool:
    """Whether the ``CI`` environment variable is set (to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def _callback_list(callbacks: Any) -> list:
    """``--trainer.callbacks`` (``None``, one callback or a list of them) as a new list."""
    if callbacks is None:
        return []
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]


def progress_bar_choice(
    enable_progress_bar: bool | None, callbacks: Any = None
) -> Literal["rich", "off", "user"]:
    """How ``vlkit fit | validate | test`` shows progress, given the trainer's settings.

    Args:
        enable_progress_bar: ``--trainer.enable_progress_bar`` (``None`` when not given).
        callbacks: ``--trainer.callbacks``: a callback, a list of them, or ``None``.

    Returns:
        ``"user"``: leave the trainer as configured, because the user chose: a progress-bar
        callback is among ``callbacks`` (e.g. ``TQDMProgressBar``), or ``enable_progress_bar``
        is false. ``"rich"``: add a ``RichProgressBar``: ``enable_progress_bar`` is true, or
        unset while ``sys.stdout`` is a terminal and ``CI`` is not set. ``"off"``: set
        ``enable_progress_bar`` false (plain logs, metrics still go to the loggers):
        unset while stdout is not a terminal (a pipe, a file, a job log) or ``CI`` is set (to
        anything but empty, ``0`` or ``false``).
    """
    from pytorch_lightning.callbacks import ProgressBar

    if enable_progress_bar is False or any(isinstance(c, ProgressBar) for c in _callback_list(callbacks)):
        return "user"
    if enable_progress_bar:
        return "rich"
    isatty = getattr(sys.stdout, "isatty", None)
    return "rich" if callable(isatty) and isatty() and not _in_ci() else "off"


def _progress_bar_overrides(enable_progress_bar: bool | None, callbacks: Any) -> dict[str, Any]:
    """Trainer keyword arguments that apply :func:`progress_bar_choice` (a new callback list with
    a ``RichProgressBar`` appended, ``enable_progress_bar=False``, or nothing)."""
    choice = progress_bar_choice(enable_progress_bar, callbacks)
    if choice == "off":
        return {"enable_progress_bar": False}
    if choice == "rich":
        from pytorch_lightning.callbacks import RichProgressBar

        return {"callbacks": [*_callback_list(callbacks), RichProgressBar()], "enable_progress_bar": True}
    return {}


def _share_run_folder(loggers: list) -> None:
    """Give loggers that share a save_dir and name the same version (one run folder).

    Without this, a CSV and a TensorBoard logger each pick the next free ``version_N``
    and a run is split over two folders.
    """
    if len(loggers) < 2:
        return
    first = loggers[0]
    for logger in loggers[1:]:
        same_root = (getattr(logger, "save_dir", None), getattr(logger, "name", None)) == (
            getattr(first, "save_dir", None),
            getattr(first, "name", None),
        )
        if same_root and hasattr(logger, "_version") and logger._version is None:
            logger._version = first.version


def cli_main(args: list[str] | None = None) -> VLKitCLI:
    """Run Lightning's CLI (``fit``/``validate``/``test``) on ``args`` (``sys.argv[1:]`` if None)."""
    from pytorch_lightning import LightningDataModule, LightningModule

    return VLKitCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


def predict_main(args: list[str] | None = None) -> list[tuple[str, float]] | str:
    """``vlkit predict``: run a trained checkpoint on one image (VQA: with a question; sentiment: with a text).

    A VQA checkpoint prints and returns the top ``(answer, probability)`` pairs, most likely
    first; a captioning checkpoint prints and returns the caption (``--save_attention out.png``
    also writes the image with the attention map of each generated word); a sentiment
    checkpoint prints and returns ``(class, probability)`` for every class, most likely first.

    Raises:
        FileNotFoundError: missing checkpoint or image.
        ValueError: an empty question or text, or a VQA checkpoint without ``--question``, or a
            sentiment checkpoint without ``--text`` (image-only baselines need none).
    """
    parser = argparse.ArgumentParser(prog="vlkit predict", description=predict_main.__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt",
        required=True,
        help="a checkpoint written by `vlkit fit`, or a folder written by `vlkit export`",
    )
    parser.add_argument("--image", required=True, help="an image file (any format Pillow reads)")
    parser.add_argument("--question", help="VQA: the question, in words")
    parser.add_argument("--top_k", type=int, default=5, help="VQA: how many answers to print")
    parser.add_argument(
        "--text", help="sentiment: the text that goes with the image (not read by image-only models)"
    )
    parser.add_argument("--beam_size", type=int, help="captioning: beam size (default: the checkpoint's)")
    parser.add_argument("--max_length", type=int, help="captioning: most tokens (default: the checkpoint's)")
    parser.add_argument(
        "--save-attention",
        "--save_attention",
        dest="save_attention",
        metavar="PNG",
        help="write a PNG of what the model attended to: captioning, the region attention of each word; "
        "VQA and sentiment, the region and word attention, the words x regions matrix (co-attention "
        "affinity or cross-modal attention) and the spatial transformer's grid, those the model has",
    )
    opts = parser.parse_args(args)
    if not Path(opts.ckpt).exists():
        raise FileNotFoundError(f"checkpoint {opts.ckpt!r} does not exist")
    if not Path(opts.image).is_file():
        raise FileNotFoundError(f"image {opts.image!r} does not exist")
    if Path(opts.ckpt).is_dir():  # a save_pretrained / vlkit export folder
        task = load_pretrained(opts.ckpt)
    else:
        task = load_task(opts.ckpt)  # weights_only: a checkpoint that holds code is refused
    if task.task_name == "captioning":
        return _predict_caption(opts, task)
    if task.task_name == "sentiment":
        return _predict_sentiment(opts, task)
    if opts.question is None:
        raise ValueError("this is a VQA checkpoint: give the question with --question")
    return _predict_answer(opts, task)


def export_main(args: list[str] | None = None) -> Path:
    """``vlkit export --ckpt run.ckpt --out folder``: a checkpoint as a ``save_pretrained`` folder
    (``model.safetensors``, ``config.json``, ``vlkit.json``, the Hugging Face parts' files),
    which ``vlkit.checkpoint.load_pretrained``, ``<Task>.from_pretrained`` and ``vlkit predict
    --ckpt folder`` read, and ``push_to_hub`` publishes.

    Raises:
        FileNotFoundError: missing checkpoint.
        pickle.UnpicklingError: a checkpoint that holds code (refused).
    """
    parser = argparse.ArgumentParser(prog="vlkit export", description=export_main.__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by `vlkit fit`")
    parser.add_argument("--out", required=True, help="the folder to write")
    opts = parser.parse_args(args)
    task = load_task(opts.ckpt)
    task.save_pretrained(opts.out)
    logging.getLogger(__name__).info("%s task saved to %s", task.task_name, opts.out)
    return Path(opts.out)


def _image_tensor(path: str, task, default_size: int) -> torch.Tensor:
    """``(1, 3, S, S)`` the image as the task's DataModule prepared evaluation images."""
    from vlkit.data.common import image_transform, load_image

    size = (task.data_settings or {}).get("image_size", default_size)
    return image_transform(size, train=False, augment=False)(load_image(path))[None]


def _predict_answer(opts: argparse.Namespace, task) -> list[tuple[str, float]]:

    from vlkit.text import WordTokenizer

    tokenizer = WordTokenizer(task.hparams.vocabulary)
    ids = torch.tensor([tokenizer.encode(opts.question)])
    with _recording(opts, task) as recorded:
        answers = task.answer(_image_tensor(opts.image, task, 64), ids, top_k=opts.top_k)[0]
    _print_probabilities(f"Q: {opts.question}", "answer", answers)
    if opts.save_attention:
        from vlkit.viz import token_labels, vqa_attention_figure

        tokens = token_labels(tokenizer, opts.question, ids[0].tolist())
        _save_attention(
            opts,
            task,
            recorded,
            lambda image, maps: vqa_attention_figure(image, tokens, maps, opts.question, answers),
        )
    return answers


def _recording(opts: argparse.Namespace, task):
    """With ``--save-attention``: forward hooks that record the model's attention (its outputs
    are the same), a :class:`vlkit.viz.AttentionRecorder` context; otherwise a no-op context."""
    import contextlib

    if not opts.save_attention:
        return contextlib.nullcontext()
    from vlkit.viz import record_attention

    return record_attention(task.model)


def _save_attention(opts: argparse.Namespace, task, recorded, draw) -> None:
    """Write ``draw(image, attention maps)`` to ``--save-attention``; a model whose fusion has no
    attention gets its spatial transformer's grid only, or a message and no picture."""
    from rich.console import Console

    from vlkit.data.common import load_image
    from vlkit.viz import save_figure

    console, attention = Console(), recorded.maps(0)
    if not attention.has_attention:
        rest = (
            "drawing the spatial transformer's grid only"
            if attention.theta is not None
            else "no picture written"
        )
        console.print(f"the {type(task.model.fusion).__name__} fusion has no attention to draw; {rest}")
    if attention.has_attention or attention.theta is not None:  # the STN grid, at least
        figure = draw(load_image(opts.image), attention)
        console.print(f"attention written to {save_figure(figure, opts.save_attention)}", style="dim")


def _print_probabilities(header: str, column: str, rows: list[tuple[str, float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column(column)
    table.add_column("probability", justify="right")
    for name, prob in rows:
        table.add_row(name, f"{prob:.4f}")
    console = Console()
    console.print(header, markup=False, highlight=False, soft_wrap=True)
    console.print(table)


def _predict_sentiment(opts: argparse.Namespace, task) -> list[tuple[str, float]]:

    from vlkit.text import HFTokenizer, WordTokenizer

    tokenizer = None
    if task.model.text_encoder is None:  # an image-only baseline reads no text
        ids = torch.zeros(1, 1, dtype=torch.long)
    elif opts.text is None:
        raise ValueError("this is a sentiment checkpoint: give the text with --text")
    else:
        hp = task.hparams
        with rebuilding_from_checkpoint(task._hf_files()):  # the tokenizer files saved with the task
            tokenizer = HFTokenizer(hp.tokenizer_name) if hp.tokenizer_name else WordTokenizer(hp.vocabulary)
        max_length = (task.data_settings or {}).get("max_text_length")
        ids = torch.tensor([tokenizer.encode(opts.text, max_length)])
    with _recording(opts, task) as recorded:
        probs = task.classify(
            _image_tensor(opts.image, task, 64), ids, torch.ones_like(ids, dtype=torch.bool)
        )
    ranked = sorted(zip(task.classes, probs[0].tolist()), key=lambda pair: -pair[1])
    _print_probabilities(f"text: {opts.text}" if opts.text else "image only", "class", ranked)
    if opts.save_attention:
        from vlkit.viz import sentiment_attention_figure, token_labels

        tokens = [] if tokenizer is None else token_labels(tokenizer, opts.text, ids[0].tolist())
        _save_attention(
            opts,
            task,
            recorded,
            lambda image, maps: sentiment_attention_figure(image, tokens, maps, opts.text, ranked),
        )
    return ranked


def _predict_caption(opts: argparse.Namespace, task) -> str:
    from rich.console import Console

    from vlkit.data.common import load_image

    image = _image_tensor(opts.image, task, 96)
    with torch.no_grad():
        encoded = task.model.image_encoder(image)
    out = task.search(encoded[0], encoded[1], beam_size=opts.beam_size, max_length=opts.max_length)
    caption = task.decode(out.tokens)[0]
    console = Console()
    console.print(caption, markup=False, highlight=False, soft_wrap=True)
    console.print(f"log-probability {float(out.log_probs[0]):.3f}, {int(out.lengths[0])} tokens", style="dim")
    if opts.save_attention:
        from vlkit.viz import save_caption_attention

        length = int(out.lengths[0])
        words = [task.tokenizer.decode([t]) or "<eos>" for t in out.tokens[0, :length].tolist()]
        grid = tuple(encoded.grid_size)
        path = save_caption_attention(
            opts.save_attention, load_image(opts.image), words, out.weights[0, :length], grid
        )
        console.print(f"attention maps written to {path}", style="dim")
        if encoded.theta is not None:  # the spatial transformer's grid, beside the word panels
            from vlkit.viz import save_figure, stn_grid_figure

            stn = save_figure(
                stn_grid_figure(load_image(opts.image), encoded.theta[0]),
                path.with_name(f"{path.stem}_stn.png"),
            )
            console.print(f"spatial transformer grid written to {stn}", style="dim")
    return caption


def main(argv: list[str] | None = None) -> None:
    """Console entry point ``vlkit``."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "predict":
        predict_main(argv[1:])
    elif argv and argv[0] == "export":
        export_main(argv[1:])
    elif argv and argv[0] == "report":
        from vlkit.report import report_main

        report_main(argv[1:])
    else:
        cli_main(argv)


if __name__ == "__main__":
    main()
