"""The ``vlkit`` command line.

- ``vlkit fit | validate | test --config recipes/<task>/<name>.yaml`` — Lightning's CLI
  (:mod:`vlkit.cli.train`; every ``--trainer.*``, ``--model.*``, ``--data.*`` option can override
  the recipe). ``fit`` evaluates the best checkpoint on the test split afterwards unless
  ``--test_after_fit false``. Runs write to ``runs/<recipe name>/`` (:mod:`vlkit.cli.runs`).
- ``vlkit predict --ckpt runs/<recipe> --image img.png [--question ... | --text ...]``
  answers with a trained task (:mod:`vlkit.cli.predict`); ``--save-attention out.png`` draws what
  the model attended to.
- ``vlkit export --ckpt run.ckpt --out folder`` writes a ``save_pretrained`` folder (Hugging
  Face conventions: ``model.safetensors`` + ``config.json``), which ``--ckpt`` also accepts.
- ``vlkit report runs/<recipe>[/version_N] [--out DIR]`` draws the learning curves of a run and
  tabulates the best epoch's metrics (:mod:`vlkit.report`).

Progress: a Rich progress bar when stdout is a terminal, plain logs when it is not or when the
``CI`` environment variable is set (:func:`progress_bar_choice`).
"""

from __future__ import annotations

import logging
import sys

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


def main(argv: list[str] | None = None) -> None:
    """Console entry point ``vlkit``."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in ("predict", "export"):
        command = predict_main if argv[0] == "predict" else export_main
        try:
            command(argv[1:])
        except (ValueError, FileNotFoundError) as err:  # a user's mistake: the message, no traceback
            print(f"vlkit {argv[0]}: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    elif argv and argv[0] == "report":
        from vlkit.report import report_main

        report_main(argv[1:])
    else:
        cli_main(argv)
