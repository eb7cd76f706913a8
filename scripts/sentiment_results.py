"""Emoji sentiment: image-only, text-only and cross-modal fusion (LSTM, fine-tuned MiniLM), over seeds.

Usage:
    python scripts/sentiment_results.py [--variants image_only text_only ...] [--seeds 0 1 2]
        [--out results.json] [--markdown table.md] [extra vlkit fit arguments]
    python scripts/sentiment_results.py --merge a.json b.json [--markdown table.md]

The four variants share the recipe ``recipes/sentiment/emoji_crossmodal.yaml`` (frozen packaged
EfficientNet-Lite0 regions, bidirectional LSTM over the emoji name, cross-modal attention, MLP
head, balanced class weights, 12 epochs, test on the best validation macro-F1 checkpoint):
``image_only`` and ``text_only`` set the task's ``modality`` (the other encoder and the fusion
are left out; the kept modality is mean-pooled), ``crossmodal_minilm`` is
``recipes/sentiment/emoji_minilm.yaml`` (the same with the packaged all-MiniLM-L6-v2 fine-tuned
in place of the LSTM), and ``text_only_minilm`` is its text-only baseline (mean-pooled MiniLM
tokens, as sentence-transformers pools them). Each (variant, seed) runs in this process with ``--seed_everything SEED``
(the data split stays the same); logs go to ``runs/sentiment_results/<variant>_seed<SEED>/``.
Printed: test accuracy and macro-F1, mean ± sample standard deviation over the seeds and their
range, and training seconds per run. ``--merge`` builds the table from the JSON files of
earlier runs (e.g. two processes that each ran some variants).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_runs, when imported from elsewhere

from recipe_runs import markdown_table, recipe_epochs, run_recipe

ROOT = Path(__file__).resolve().parents[1]
CROSSMODAL = "recipes/sentiment/emoji_crossmodal.yaml"
MINILM = "recipes/sentiment/emoji_minilm.yaml"
#: variant -> (recipe, extra vlkit fit arguments)
VARIANTS = {
    "image_only": (CROSSMODAL, ["--model.init_args.modality", "image"]),
    "text_only": (CROSSMODAL, ["--model.init_args.modality", "text"]),
    "crossmodal_lstm": (CROSSMODAL, []),
    "crossmodal_minilm": (MINILM, []),
    "text_only_minilm": (MINILM, ["--model.init_args.modality", "text"]),
}
COLUMNS = {
    "variant": "variant",
    "acc": "test accuracy (mean ± sd)",
    "acc_range": "accuracy range",
    "macro_f1": "test macro-F1 (mean ± sd)",
    "f1_range": "macro-F1 range",
    "seeds": "seeds",
    "seconds": "train s / run (mean)",
}


def summarize(runs: list[dict]) -> list[dict]:
    """One row per variant (in :data:`VARIANTS` order): mean ± sample sd and range of the test
    accuracy and macro-F1 over its seeds, and the mean training seconds per run."""
    rows = []
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        row = {"variant": variant, "seeds": " ".join(str(r["seed"]) for r in mine)}
        for key, label, span in (("test_acc", "acc", "acc_range"), ("test_macro_f1", "macro_f1", "f1_range")):
            values = [r[key] for r in mine]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            row[label] = f"{statistics.mean(values):.3f} ± {sd:.3f}"
            row[span] = f"{min(values):.3f}–{max(values):.3f}"
        row["seconds"] = round(statistics.mean(r["seconds"] for r in mine), 1)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="JSON file for the per-run results")
    parser.add_argument("--markdown", default=None, help="Markdown file for the table")
    parser.add_argument("--log-root", default="runs/sentiment_results")
    parser.add_argument("--merge", nargs="+", default=None, help="JSON files of earlier runs to tabulate")
    args, extra = parser.parse_known_args(argv)

    if args.merge:
        runs = [run for path in args.merge for run in json.loads(Path(path).read_text())]
    else:
        runs = []
        for variant in args.variants:
            recipe, overrides = VARIANTS[variant]
            for seed in args.seeds:
                name = f"{variant}_seed{seed}"
                epochs = recipe_epochs(ROOT / recipe)
                result = run_recipe(
                    str(ROOT / recipe),
                    name,
                    args.log_root,
                    epochs,
                    [*overrides, "--seed_everything", str(seed), *extra],
                )
                runs.append({"variant": variant, "seed": seed, **result})
                if args.out:
                    Path(args.out).write_text(json.dumps(runs, indent=2))
    rows = summarize(runs)
    table = markdown_table(rows, COLUMNS)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return rows


if __name__ == "__main__":
    main()
