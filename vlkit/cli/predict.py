"""``vlkit predict`` and ``vlkit export``: a trained task from a checkpoint or an exported folder.

``vlkit predict`` only reads its options and calls the task's ``predict`` (:mod:`vlkit.tasks`),
then prints the prediction and, with ``--save_attention``, draws it (:mod:`vlkit.viz`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from vlkit.cli.batch import check_output_path, parse_device, prediction_record, read_inputs, write_predictions
from vlkit.cli.runs import resolve_checkpoint
from vlkit.tasks import CaptionPrediction, TrainingTask, VQAPrediction, load_pretrained, load_task
from vlkit.tasks.graph_export import GRAPH_FORMATS, export_graph, graph_difference
from vlkit.tasks.saving import write_model_card

__all__ = ["export_main", "predict_main"]

log = logging.getLogger(__name__)


def _load(path: str | Path) -> TrainingTask:
    """The task of a checkpoint file, an export folder, or a run folder (``runs/<recipe>`` or one
    of its ``version_N``: its newest ``last.ckpt``; see :func:`vlkit.cli.runs.resolve_checkpoint`)."""
    path = resolve_checkpoint(path)
    if path.is_dir():  # a save_pretrained / vlkit export folder
        return load_pretrained(path)
    return load_task(path)  # weights_only: a checkpoint that holds code is refused


#: How ``vlkit predict`` calls each task's ``predict``: the options it reads.
_PREDICT_INPUTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "vqa": lambda opts: {"questions": opts.question, "top_k": opts.top_k},
    "captioning": lambda opts: {"beam_size": opts.beam_size, "max_length": opts.max_length},
    "sentiment": lambda opts: {"texts": opts.text},
}
#: The option that gives the text a task reads with each image, if any.
_TEXT_OPTIONS = {"vqa": ("--question", "question"), "sentiment": ("--text", "text")}


def predict_main(args: list[str] | None = None) -> Any:
    """``vlkit predict``: run a trained checkpoint through the task's :meth:`predict` on one image
    (``--image``; VQA: with a question, sentiment: with a text) or on many (``--inputs``: a folder,
    a glob or a CSV / JSONL table, in batches), print the predictions and return them.

    VQA prints the top answers with their probabilities; captioning the caption and its
    log-probability; sentiment every class's probability; many inputs print one line each.
    ``--output predictions.jsonl`` (or ``.csv``) writes every prediction; ``--device`` picks where
    the model runs; ``--save_attention out.png`` draws what the model attended to for one image
    (:mod:`vlkit.viz`). Words of a question that the model does not know are named in a warning.

    Returns:
        The prediction (one image), or the list of predictions in input order (``--inputs``).

    Raises:
        FileNotFoundError: missing checkpoint or images.
        ValueError: an empty question or text, or a VQA checkpoint without questions, or a
            sentiment checkpoint without texts (image-only baselines need none), an option out of
            range, ``--image`` with ``--inputs``, an unknown or absent ``--device``, or an
            ``--output`` that is not ``.jsonl`` / ``.csv``.
    """
    parser = argparse.ArgumentParser(prog="vlkit predict", description=predict_main.__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="a checkpoint written by `vlkit fit`, a run folder (runs/<recipe>: its newest last.ckpt), "
        "or a folder written by `vlkit export`",
    )
    parser.add_argument(
        "--image", help="an image file (any format Pillow reads); not needed by a text-only sentiment model"
    )
    parser.add_argument(
        "--inputs",
        help="many inputs: a folder of images, a quoted glob ('photos/*.jpg'), or a .csv / .jsonl table with an "
        "'image' column (paths relative to the table) and a 'question' (VQA) or 'text' (sentiment) column; "
        "--question / --text then go with every image that has none",
    )
    parser.add_argument("--question", help="VQA: the question, in words")
    parser.add_argument("--top_k", type=int, default=5, help="VQA: how many answers to print")
    parser.add_argument(
        "--text", help="sentiment: the text that goes with the image (not read by image-only models)"
    )
    parser.add_argument("--beam_size", type=int, help="captioning: beam size (default: the checkpoint's)")
    parser.add_argument("--max_length", type=int, help="captioning: most tokens (default: the checkpoint's)")
    parser.add_argument("--batch_size", type=int, default=32, help="inputs per forward pass with --inputs")
    parser.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, cuda:1, mps, ...")
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="also write the predictions to a .jsonl (one JSON object per line) or .csv",
    )
    parser.add_argument(
        "--save_attention",
        metavar="PNG",
        help="write a PNG of what the model attended to (one --image): captioning, the region attention of each "
        "word; VQA and sentiment, the region and word attention, the words x regions matrix (co-attention "
        "affinity or cross-modal attention) and the spatial transformer's grid, those the model has",
    )
    opts = parser.parse_args(args)
    _check_options(opts)
    device = parse_device(opts.device)
    if not Path(opts.ckpt_path).exists():
        raise FileNotFoundError(f"checkpoint {opts.ckpt_path!r} does not exist")
    if opts.image is not None and not Path(opts.image).is_file():
        raise FileNotFoundError(f"image {opts.image!r} does not exist")
    task = _load(opts.ckpt_path).to(device)
    option = _TEXT_OPTIONS.get(task.task_name)
    reads_text = option is not None and getattr(task.model, "text_encoder", None) is not None
    reads_image = getattr(task.model, "image_encoder", None) is not None
    if opts.inputs is not None:
        if not reads_image:
            raise ValueError(
                f"--inputs reads images, and this {task.task_name} model reads only text: call its predict "
                "from Python with images=None"
            )
        text_field = option[1] if reads_text else None
        rows = read_inputs(opts.inputs, text_field, getattr(opts, option[1]) if text_field else None)
        return _predict_many(task, rows, text_field, opts)
    if opts.image is None and reads_image:
        raise ValueError(
            f"this is a {task.task_name} checkpoint: give the image with --image (or many with --inputs)"
        )
    if reads_text and getattr(opts, option[1]) is None:
        raise ValueError(f"this is a {task.task_name} checkpoint: give the {option[1]} with {option[0]}")
    inputs = _PREDICT_INPUTS[task.task_name](opts)
    if opts.save_attention and opts.image is not None:
        from vlkit.viz import record_attention, save_prediction_figure

        with record_attention(task.model) as recorded:
            prediction = task.predict(opts.image, **inputs, return_attention=True)[0]
        _print_prediction(prediction, inputs)
        text = opts.question if task.task_name == "vqa" else opts.text
        for line in save_prediction_figure(opts.save_attention, opts.image, prediction, recorded, text):
            Console().print(line, style="dim", markup=False)
    else:
        prediction = task.predict(opts.image, **inputs)[0]
        _print_prediction(prediction, inputs)
    if opts.output:
        row = {"image": opts.image, **({option[1]: getattr(opts, option[1])} if reads_text else {})}
        log.info(
            "prediction written to %s", write_predictions(opts.output, [prediction_record(row, prediction)])
        )
    return prediction


def _check_options(opts: argparse.Namespace) -> None:
    """Refuse out-of-range and conflicting options before anything is loaded."""
    for name in ("top_k", "beam_size", "max_length", "batch_size"):
        value = getattr(opts, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    if opts.image is not None and opts.inputs is not None:
        raise ValueError("give one image with --image or many with --inputs, not both")
    if opts.inputs is not None and opts.save_attention:
        raise ValueError("--save_attention draws one image: use it with --image, not --inputs")
    if opts.output:
        check_output_path(opts.output)


def _predict_many(
    task: TrainingTask, rows: list[dict], text_field: str | None, opts: argparse.Namespace
) -> list:
    """Predict ``rows`` (from :func:`vlkit.cli.batch.read_inputs`) in batches of ``--batch_size``;
    print one line per input (the first 20 when there are more and ``--output`` is given), name the
    unknown words of VQA questions, and write ``--output``."""
    predictions = []
    for start in range(0, len(rows), opts.batch_size):
        chunk = rows[start : start + opts.batch_size]
        inputs = _PREDICT_INPUTS[task.task_name](opts)
        if text_field is not None:
            inputs[{"question": "questions", "text": "texts"}[text_field]] = [
                row[text_field] for row in chunk
            ]
        predictions.extend(task.predict([row["image"] for row in chunk], **inputs))
    records = [prediction_record(row, prediction) for row, prediction in zip(rows, predictions)]
    _print_records(records, text_field, shown=20 if opts.output else len(records))
    unknown = sorted({word for record in records for word in record.get("unknown_words", [])})
    if unknown:
        count = sum(bool(record.get("unknown_words")) for record in records)
        Console(stderr=True).print(
            f"warning: {count} of {len(records)} questions have words that are not in the model's vocabulary "
            f"(read as <unk>): {', '.join(unknown[:20])}{' ...' if len(unknown) > 20 else ''}",
            style="yellow",
            markup=False,
        )
    if opts.output:
        log.info("%d predictions written to %s", len(records), write_predictions(opts.output, records))
    return predictions


def _print_records(records: list[dict], text_field: str | None, shown: int) -> None:
    """A table of the first ``shown`` records: image, text, prediction and score."""
    table = Table()
    columns = ["image", *([text_field] if text_field else []), "prediction", "score"]
    for name in columns:
        table.add_column(name, justify="right" if name == "score" else "left")
    for record in records[:shown]:
        predicted = record.get("answer", record.get("caption", record.get("label")))
        cells = [Path(record["image"]).name, *([record[text_field]] if text_field else [])]
        table.add_row(*cells, str(predicted), f"{record['score']:.4f}")
    console = Console()
    console.print(table)
    if len(records) > shown:
        console.print(f"... and {len(records) - shown} more (all in --output)", style="dim")


def _print_prediction(prediction: Any, inputs: dict[str, Any]) -> None:
    """Print a task's prediction: a table of (answer or class, probability), or the caption."""
    console = Console()
    if isinstance(prediction, CaptionPrediction):
        console.print(prediction.caption, markup=False, highlight=False, soft_wrap=True)
        console.print(
            f"log-probability {prediction.log_prob:.3f}, {len(prediction.tokens)} tokens", style="dim"
        )
        return
    if isinstance(prediction, VQAPrediction):
        header, column, rows = f"Q: {inputs['questions']}", "answer", prediction.answers
        if prediction.unknown_words:
            console.print(
                f"warning: {len(prediction.unknown_words)} word(s) of the question are not in the model's "
                f"vocabulary and were read as <unk>: {', '.join(prediction.unknown_words)}",
                style="yellow",
            )
    else:
        text = inputs.get("texts")
        header, column, rows = (f"text: {text}" if text else "image only"), "class", prediction.probabilities
    table = Table()
    table.add_column(column)
    table.add_column("probability", justify="right")
    for name, prob in rows:
        table.add_row(name, f"{prob:.4f}")
    console.print(header, markup=False, highlight=False, soft_wrap=True)
    console.print(table)


def _run_test_metrics(ckpt_path: Path) -> dict[str, float]:
    """The last ``test/*`` values in the ``metrics.csv`` of the run that wrote the checkpoint file
    ``ckpt_path`` (``version_N/checkpoints/x.ckpt`` → ``version_N/metrics.csv``); empty when
    there is none."""
    import csv

    metrics_csv = ckpt_path.parent.parent / "metrics.csv"
    values: dict[str, float] = {}
    if metrics_csv.is_file():
        with open(metrics_csv, newline="") as file:
            for row in csv.DictReader(file):
                values.update(
                    {k: float(v) for k, v in row.items() if k.startswith("test/") and v not in ("", None)}
                )
    return values


def export_main(args: list[str] | None = None) -> Path:
    """``vlkit export --ckpt_path run.ckpt --out folder``: a checkpoint as a ``save_pretrained`` folder
    (``model.safetensors``, ``config.json``, ``vlkit.json``, the Hugging Face parts' files),
    which ``vlkit.tasks.load_pretrained``, ``<Task>.from_pretrained`` and ``vlkit predict
    --ckpt_path folder`` read, and ``push_to_hub`` publishes.

    Raises:
        FileNotFoundError: missing checkpoint.
        pickle.UnpicklingError: a checkpoint that holds code (refused).
    """
    parser = argparse.ArgumentParser(prog="vlkit export", description=export_main.__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="a checkpoint written by `vlkit fit`, or a run folder (its newest last.ckpt)",
    )
    parser.add_argument("--out", required=True, help="the folder to write")
    parser.add_argument(
        "--format",
        default="pytorch",
        choices=["pytorch", *GRAPH_FORMATS],
        help="pytorch: the save_pretrained folder only; torch.export / onnx: also the network as a graph that "
        "runs without vlkit (model.pt2 / model.onnx; onnx needs the onnx extra), checked against PyTorch",
    )
    opts = parser.parse_args(args)
    if not opts.out.strip():
        raise ValueError("--out must name a folder, got an empty string")
    checkpoint = resolve_checkpoint(opts.ckpt_path)  # a run folder: its newest last.ckpt, once
    task = _load(checkpoint)
    task.save_pretrained(opts.out)
    metrics = _run_test_metrics(checkpoint) if checkpoint.is_file() else {}
    graph = None
    if opts.format != "pytorch":
        path = export_graph(task, opts.out, opts.format)
        difference = graph_difference(task, path)
        graph = {"file": path.name, "format": opts.format, "max_abs_difference": difference}
        log.info("%s written: outputs within %.2g of PyTorch's", path, difference)
    if metrics or graph:  # the model card gives the run's test metrics and the graph file
        write_model_card(opts.out, task, metrics, graph)
    log.info("%s task saved to %s", task.task_name, opts.out)
    return Path(opts.out)
