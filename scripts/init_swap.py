"""Train a recipe at one seed with some model parts' initial weights taken from another seed.

Usage:
    python scripts/init_swap.py --recipe recipes/vqa/easy_vqa_parallel.yaml --seed 0 --weights_seed 4 \
        --parts text_encoder [image_encoder.proj fusion head | all] [--run_name NAME] [vlkit fit arguments]

``seed_everything`` sets two things: the model's initial weights and the dropout masks (the training
order and the flips come from ``data.init_args.seed``). This script separates them and the parts:
it builds the task at ``--weights_seed`` and at ``--seed``, copies the initial weights of the named
parts (``image_encoder``, ``image_encoder.proj``, ``text_encoder``, ``fusion``, ``head``, or
``all``) from the first into the second, then fits and tests the second as ``vlkit fit`` does
(its dropout masks are ``--seed``'s). It prints ``RESULT <run name> <test metrics as JSON>``.
The README's Results section used it to find which initial weights make the stride-16 easy-VQA
recipe learn colours late (the question encoder's and the region projection's).
"""

from __future__ import annotations

import argparse
import json
import sys

from torch import nn


def take_initial_weights(target: nn.Module, source: nn.Module, parts: list[str]) -> list[str]:
    """Copy into ``target`` the state entries of ``source`` under ``model.<part>.`` for each part
    (every entry for ``["all"]``); return the names copied.

    Raises:
        ValueError: a part names no entry of the task's model (the message lists the parts there).
    """
    state, other = target.state_dict(), source.state_dict()
    if parts == ["all"]:
        taken = list(state)
    else:
        taken = []
        for part in parts:
            names = [name for name in state if name.startswith(f"model.{part}.")]
            if not names:
                top = sorted({name.split(".")[1] for name in state if name.startswith("model.")})
                raise ValueError(f"--parts {part!r} names nothing in the model; its parts are {top}")
            taken += names
    target.load_state_dict({**state, **{name: other[name] for name in taken}})
    return taken


def build(recipe: str, seed: int, extra: list[str]):
    """The CLI of ``vlkit fit --config recipe --seed_everything seed ...``, built but not run."""
    from vlkit.cli import cli_main

    return cli_main(["--config", recipe, "--seed_everything", str(seed), *extra], run=False)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--seed", type=int, required=True, help="seed_everything of the run (its dropout)")
    parser.add_argument(
        "--weights_seed", type=int, required=True, help="the seed the parts' weights come from"
    )
    parser.add_argument("--parts", nargs="+", required=True)
    parser.add_argument("--run_name", default=None)
    args, extra = parser.parse_known_args(argv)
    name = args.run_name or f"swap_seed{args.seed}_{'+'.join(args.parts)}_from{args.weights_seed}"
    source = build(args.recipe, args.weights_seed, [*extra, "--run_name", name]).model
    cli = build(args.recipe, args.seed, [*extra, "--run_name", name])  # seeds again: its own dropout
    try:
        taken = take_initial_weights(cli.model, source, args.parts)
    except ValueError as err:
        sys.exit(f"init_swap.py: {err}")
    print(f"{len(taken)} tensors from seed {args.weights_seed}: {', '.join(args.parts)}")
    cli.trainer.fit(cli.model, cli.datamodule)
    (result,) = cli.trainer.test(cli.model, cli.datamodule, ckpt_path="best")
    print("RESULT", name, json.dumps(result))
    return result


if __name__ == "__main__":
    main()
