"""The ``vlkit`` command line.

- ``vlkit fit | validate | test --config recipes/<task>/<name>.yaml`` — Lightning's CLI
  (:mod:`vlkit.cli.train`; every ``--trainer.*``, ``--model.*``, ``--data.*`` option can override
  the recipe). ``fit`` evaluates the best checkpoint on the test split afterwards unless
  ``--test_after_fit false``. Runs write to ``runs/<recipe name>/`` (:mod:`vlkit.cli.runs`).
- ``vlkit predict --ckpt_path runs/<recipe> --image img.png [--question ... | --text ...]``
  answers with a trained task (:mod:`vlkit.cli.predict`); ``--save_attention out.png`` draws what
  the model attended to.
- ``vlkit export --ckpt_path run.ckpt --out folder`` writes a ``save_pretrained`` folder (Hugging
  Face conventions: ``model.safetensors`` + ``config.json``), which ``--ckpt_path`` also accepts.
- ``vlkit report runs/<recipe>[/version_N] [--out DIR]`` draws the learning curves of a run and
  tabulates the best epoch's metrics (:mod:`vlkit.report`).

Progress: a Rich progress bar when stdout is a terminal, plain logs when it is not or when the
``CI`` environment variable is set (:func:`progress_bar_choice`).
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import traceback
from pathlib import Path

# Lightning before Rich (which vlkit.cli.predict imports): Python's typing caches Optional[Union[...]]
# by equality, and with Rich imported first Lightning's own imports cache lightning_fabric's
# Optional[Union[float, int]] before the Trainer's Optional[Union[int, float]], so the Trainer's
# limit_*_batches read "--trainer.limit_train_batches 1" as 1.0 (the whole epoch), not one batch.
import pytorch_lightning  # noqa: F401

from vlkit.cli.predict import export_main, predict_main
from vlkit.cli.runs import progress_bar_choice, progress_bar_overrides, run_defaults
from vlkit.cli.train import VLKitCLI, cli_main, expand_recipe_bases, register_config_types

__all__ = [
    "VLKitCLI",
    "cli_main",
    "expand_recipe_bases",
    "export_main",
    "main",
    "predict_main",
    "progress_bar_choice",
    "progress_bar_overrides",
    "register_config_types",
    "run_defaults",
]


#: The kinds of error that vlkit raises for a user's mistake (bad option, data, file, checkpoint).
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, RuntimeError, pickle.UnpicklingError)
_PACKAGE = Path(__file__).resolve().parents[1]


def user_error(error: BaseException) -> BaseException | None:
    """The user's mistake behind ``error``: the innermost exception of its chain (``__cause__`` /
    ``__context__``) that vlkit's own code raised (its raise site is in the ``vlkit`` package) and
    is one of :data:`USER_ERRORS`; None if there is none (a bug, shown with its traceback)."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    for candidate in reversed(chain):  # innermost first
        frames = traceback.extract_tb(candidate.__traceback__)
        if frames and isinstance(candidate, USER_ERRORS) and Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE):
            return candidate
    return None


#: ``vlkit --help``: every command with what it does.
HELP = """usage: vlkit [--debug] <command> [options]

Attention and fusion layers, models and training recipes for vision-language learning.

commands:
  fit        train a task from a recipe, then test its best checkpoint
             (vlkit fit --config recipes/vqa/easy_vqa_parallel_stride8.yaml)
  validate   evaluate a checkpoint on the validation split (--config RECIPE --ckpt_path CKPT|last)
  test       evaluate a checkpoint on the test split (--config RECIPE --ckpt_path CKPT|last)
  predict    answer, caption or classify images with a trained task (--ckpt_path CKPT|runs/<recipe>|EXPORT
             --image IMAGE, or --inputs FOLDER|GLOB|TABLE [--output predictions.jsonl])
  export     write a checkpoint as a save_pretrained folder (--ckpt_path CKPT --out FOLDER
             [--format onnx|torch.export])
  report     learning curves and the best epoch's metrics of a run (vlkit report runs/<recipe>)
  recipes    list the recipes that ship with vlkit (--config takes their names outside a checkout)

Run "vlkit <command> --help" for a command's options. A mistake ends with one line
"vlkit <command>: error: ..."; --debug (before the command) or VLKIT_DEBUG=1 shows its traceback."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point ``vlkit``. A user's mistake ends the command with one line, ``vlkit
    <command>: error: <what and how to fix it>`` and exit code 2 (:func:`user_error`); ``--debug``
    (first argument) or ``VLKIT_DEBUG=1`` shows the traceback instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("VLKIT_DEBUG", "").strip().lower() not in ("", "0", "false")
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(HELP)
        return
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = argv[0]
    try:
        if command in ("predict", "export"):
            (predict_main if command == "predict" else export_main)(argv[1:])
        elif command == "recipes":
            from vlkit.cli.train import RECIPES, list_recipes

            print(f"recipes that ship with vlkit ({RECIPES}); vlkit fit --config takes these names anywhere:")
            print("\n".join(f"  {name}" for name in list_recipes()))
        elif command == "report":
            from vlkit.report import report_main

            report_main(argv[1:])
        else:
            cli_main(argv)
    except Exception as err:
        mistake = None if debug else user_error(err)
        if mistake is None:
            raise
        print(f"vlkit {command}: error: {mistake} (--debug shows where)", file=sys.stderr)
        raise SystemExit(2) from None
