"""Emoji captioning recipes over seeds: BLEU, ROUGE-L, CIDEr-D and exact captions, mean ± sd.

Usage:
    python scripts/captioning_results.py [--recipes recipes/captioning/emoji_sat.yaml ...]
        [--seeds 0 1 2] [--out results.json] [--markdown table.md]
    python scripts/captioning_results.py --runs runs/emoji_sat_seed1/version_0 ... [--markdown table.md]

Each (recipe, seed) runs ``vlkit fit --config RECIPE --seed_everything SEED`` in this process (the
recipe's epochs; the test split decoded as the recipe says, on the best validation checkpoint),
logging to ``runs/captioning_results/<recipe>_seed<SEED>/``; the scores are read from the run's
``test_captions.json`` (what ``CaptioningTask`` writes after testing). ``--runs`` tabulates
finished run folders instead (their ``config.yaml`` names the recipe's model and seed). Printed:
one row per run, then each recipe's mean ± sample standard deviation over its seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_runs, when imported from elsewhere

from recipe_runs import markdown_table

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["recipes/captioning/emoji_sat.yaml", "recipes/captioning/emoji_transformer.yaml"]
METRICS = ("bleu1", "bleu4", "rouge_l", "cider_d")
COLUMNS = {
    "recipe": "recipe",
    "seed": "seed",
    "bleu1": "BLEU-1",
    "bleu4": "BLEU-4",
    "rouge_l": "ROUGE-L",
    "cider_d": "CIDEr-D",
    "exact": "exact captions",
}


def read_run(run_dir: str | Path, recipe: str, seed: int) -> dict:
    """The test scores of a finished captioning run folder (its ``test_captions.json``).

    Raises:
        FileNotFoundError: the folder has no ``test_captions.json`` (the run was not tested).
    """
    path = Path(run_dir) / "test_captions.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: was the run tested?")
    written = json.loads(path.read_text())
    captions = written["captions"]
    exact = sum(c["caption"] in c["references"] for c in captions)
    return {
        "recipe": recipe,
        "seed": seed,
        **{m: round(written["scores"][m], 4) for m in METRICS},
        "exact": f"{exact} / {len(captions)}",
        "run_dir": str(run_dir),
    }


def summarize(runs: list[dict]) -> list[dict]:
    """Each recipe's mean ± sample sd of every metric over its seeds (``seed`` lists them)."""
    rows = []
    for recipe in dict.fromkeys(r["recipe"] for r in runs):
        mine = [r for r in runs if r["recipe"] == recipe]
        row = {"recipe": recipe, "seed": " ".join(str(r["seed"]) for r in mine)}
        for metric in METRICS:
            values = [r[metric] for r in mine]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            row[metric] = f"{statistics.mean(values):.3f} ± {sd:.3f}"
        exact = [int(r["exact"].split(" / ")[0]) for r in mine]
        row["exact"] = (
            f"{statistics.mean(exact):.1f} ± {statistics.stdev(exact) if len(exact) > 1 else 0.0:.1f}"
        )
        rows.append(row)
    return rows


def from_run_folder(run_dir: str) -> dict:
    """A finished run folder's scores, its recipe's run name and seed read from its ``config.yaml``."""
    import yaml

    config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    name = config.get("run_name") or Path(run_dir).parent.name
    return read_run(
        run_dir, name.removesuffix(f"_seed{config['seed_everything']}"), config["seed_everything"]
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=RECIPES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--runs", nargs="+", default=None, help="finished run folders to tabulate")
    parser.add_argument("--out", default=None, help="JSON file for the per-run results")
    parser.add_argument("--markdown", default=None, help="Markdown file for the tables")
    args, extra = parser.parse_known_args(argv)
    if args.runs:
        runs = [from_run_folder(run) for run in args.runs]
        print(markdown_table(runs, COLUMNS))
    else:
        from recipe_runs import recipe_epochs, run_many, run_recipe

        def run_one(key: str) -> dict:
            recipe, seed = key.split("@")
            stem = Path(recipe).stem
            seeded = ["--seed_everything", seed, *extra]
            epochs = recipe_epochs(ROOT / recipe)
            result = run_recipe(
                str(ROOT / recipe), f"{stem}_seed{seed}", "runs/captioning_results", epochs, seeded
            )
            return read_run(result["log_dir"], stem, int(seed))

        keys = [f"{recipe}@{seed}" for recipe in args.recipes for seed in args.seeds]
        runs = run_many(keys, run_one, COLUMNS, args.out, None)
    summary = markdown_table(summarize(runs), COLUMNS)
    print("\n" + summary)
    if args.markdown:
        Path(args.markdown).write_text(markdown_table(runs, COLUMNS) + "\n\n" + summary + "\n")
    return runs


if __name__ == "__main__":
    main()
