"""``vlkit fit | validate | test``: Lightning's CLI over the vlkit tasks and DataModules.

Recipes are LightningCLI YAML files. A recipe may extend another with a top-level ``base:``
(a path relative to the recipe): the base is loaded first and the recipe's own values override
it, so a variant states only what differs (``recipes/vqa/easy_vqa_mcan.yaml`` is its fusion).
Several ``--config`` files also merge in order, as in any LightningCLI.

A model part (``image_encoder``, ``text_encoder``, ``fusion``, ``head``, ``decoder``) is one typed
configuration (:class:`vlkit.config.PartConfig`): a recipe gives it as a whole mapping, and the
command line may change one of its arguments, ``--model.init_args.fusion.depth 4``, which is
merged into the part as the recipe and earlier options set it.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from pytorch_lightning.cli import LightningCLI

from vlkit.cli.runs import latest_checkpoint, progress_bar_overrides, run_defaults, share_run_folder

__all__ = [
    "RECIPES",
    "VLKitCLI",
    "cli_main",
    "expand_recipe_bases",
    "list_recipes",
    "packaged_recipe",
    "register_config_types",
]

log = logging.getLogger(__name__)

#: The task arguments that are part configurations, whose single fields the command line may set.
PART_ARGUMENTS = ("image_encoder", "text_encoder", "fusion", "head", "decoder")
#: DataModule properties the CLI links into the task's arguments when both are built.
LINKED_FROM_DATA = (
    "vocabulary",
    "answers",
    "multi_answer",
    "tokenizer_name",
    "classes",
    "class_weights",
    "preprocessing",
)


class VLKitCLI(LightningCLI):
    """LightningCLI whose DataModule tells the task its data-dependent settings, and whose runs get
    their folders, loggers and checkpoints by convention (:mod:`vlkit.cli.runs`).

    The question vocabulary, the answer list, the answer mode, the classes and the preprocessing
    (image size, normalisation, text length) are built by the DataModule and linked into the task
    at instantiation (:data:`LINKED_FROM_DATA`), so recipes never hard-code them and checkpoints
    carry them.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's subcommands but ``predict``, which is vlkit's own command
        (:func:`vlkit.cli.predict.predict_main`)."""
        return {name: keys for name, keys in LightningCLI.subcommands().items() if name != "predict"}

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="after `fit`, evaluate the best checkpoint on the test split",
        )
        parser.add_argument(
            "--run_name",
            type=str | None,
            default=None,
            help="the run's folder under --runs_dir (default: the name of the last --config file)",
        )
        parser.add_argument("--runs_dir", type=str, default="runs", help="where run folders are made")
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=100,
            help="also write last.ckpt every this many training steps, for --ckpt_path last (0: per epoch only)",
        )
        parser.add_argument(
            "--monitor",
            type=str | None,
            default=None,
            help="the validation metric that picks the best checkpoint, maximised (minimised if its name ends "
            "with 'loss'); default: the task's (val/vqa_acc, val/cider_d, val/macro_f1)",
        )
        parser.add_argument(
            "--base",
            type=str | None,
            default=None,
            help="(in a recipe) the recipe it extends, loaded before it; see vlkit.cli.train",
        )
        for source in LINKED_FROM_DATA:
            parser.link_arguments(f"data.{source}", f"model.init_args.{source}", apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        """Parse ``args``, first merging every ``--model.init_args.<part>.<argument> VALUE`` into the
        whole part as the recipes and earlier options set it (see the module docstring)."""
        try:
            edits, rest = _split_part_edits(list(args) if args is not None else sys.argv[1:])
        except yaml.YAMLError as err:
            parser.error(f"a --model.init_args.<part>.<argument> value is not valid YAML: {err}")
        if edits:
            probe = [a for a in rest if not a.startswith("--print_config")]
            parsed = parser.parse_args(probe)
            config = parsed[parsed.subcommand] if parsed.get("subcommand") else parsed
            init_args = config.model.init_args if config.get("model") else None
            for part, changes in edits.items():
                current = init_args.get(part) if init_args is not None else None
                if current is None or not hasattr(current, "to_dict"):
                    parser.error(
                        f"--model.init_args.{part}.<argument> needs a model with a {part} part (the "
                        f"recipe's model has none); give the whole part: --model.init_args.{part} '{{...}}'"
                    )
                base = current.to_dict()
                if changes.get("name", base["name"]) != base["name"]:  # another builder: its own defaults
                    base = {}
                rest += [f"--model.init_args.{part}", json.dumps({**base, **changes})]
        super().parse_arguments(parser, rest)

    def _parse_ckpt_path(self) -> None:
        """Check a ``--ckpt_path`` checkpoint before Lightning merges its hyper-parameters into the
        configuration (jsonargparse would import and instantiate a ``class_path`` found in them):
        it must load with ``torch.load(weights_only=True)`` and its hyper-parameters must be plain
        data naming a vlkit task (:func:`vlkit.tasks.checkpoint.check_plain_hyperparameters`).
        A refused file raises the error that ``vlkit`` prints as one line (exit code 2)."""
        from vlkit.tasks import TASKS
        from vlkit.tasks.checkpoint import check_plain_hyperparameters, load_checkpoint

        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path == "last":  # the newest last.ckpt of the run's versions (each run writes its own)
            folder = _run_folder(self.config[subcommand])
            found = latest_checkpoint(folder)
            if found is None:
                log.warning("--ckpt_path last: no last.ckpt under %s; starting from the beginning", folder)
            else:
                log.info("--ckpt_path last: resuming from %s", found)
            path = self.config[subcommand]["ckpt_path"] = None if found is None else str(found)
        if path and Path(path).is_file():
            names = [name for cls in TASKS.values() for name in cls.class_names()]
            checkpoint = load_checkpoint(path, mmap=True)  # Lightning reads the weights afterwards
            check_plain_hyperparameters(
                checkpoint.get("hyper_parameters", {}), f"--ckpt_path {path!r}", names
            )
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        """Read a ``--ckpt_path`` checkpoint with ``torch.load(weights_only=True)`` (code in it is
        refused) unless ``--weights_only false`` is given for a trusted file; drop the (already
        applied) ``base`` so that the saved ``config.yaml`` stands alone."""
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        if config is None:
            return
        if "weights_only" in config and config["weights_only"] is None:
            config["weights_only"] = True
        config["base"] = None

    def _run_settings(self) -> tuple[Path, tuple[str, str] | None, int]:
        """The run folder, the monitored metric and the checkpoint interval of this run."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        metric = config.get("monitor")
        monitor = (
            (metric, "min" if metric.endswith("loss") else "max")
            if metric
            else getattr(self.model, "monitor", None)
        )
        return _run_folder(config), monitor, int(config.get("checkpoint_every_n_steps", 100))

    def instantiate_trainer(self, **kwargs):
        """Build the trainer with the run's folder, loggers and checkpoints
        (:func:`vlkit.cli.runs.run_defaults`) and vlkit's progress display
        (:func:`vlkit.cli.runs.progress_bar_choice`), every logger writing in one run folder."""
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        folder, monitor, every_n_steps = self._run_settings()
        if monitor is not None:  # the saved config.yaml says which metric picked the best checkpoint
            (self.config[self.subcommand] if self.subcommand else self.config)["monitor"] = monitor[0]
        kwargs.update(run_defaults(config, folder, monitor, every_n_steps))
        config = {**config, **kwargs}
        kwargs.update(progress_bar_overrides(config.get("enable_progress_bar"), config.get("callbacks")))
        trainer = super().instantiate_trainer(**kwargs)
        share_run_folder(trainer.loggers)
        return trainer

    def _tests_after_fit(self) -> bool:
        """Whether ``fit`` tests afterwards: ``--test_after_fit`` and the data has a test split."""
        if not self.config_init[self.subcommand].get("test_after_fit", True):
            return False
        has_split = getattr(self.datamodule, "has_split", None)
        return not callable(has_split) or has_split("test")

    def before_fit(self) -> None:
        """Say before training, not after it, that there will be no test (the data has no test
        split)."""
        if self.config_init[self.subcommand].get("test_after_fit", True) and not self._tests_after_fit():
            log.warning(
                "the dataset has no test split %r: fit will not test afterwards (set data.test_split "
                "to the test split's name, or --test_after_fit false to silence this)",
                getattr(self.datamodule, "test_split", "test"),
            )

    def after_fit(self) -> None:
        if not self._tests_after_fit():
            return
        if self.trainer.fast_dev_run:
            self.trainer.test(self.model, datamodule=self.datamodule)
            return
        callback = self.trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)


def _run_folder(config: Any) -> Path:
    """``<runs_dir>/<run_name>`` of a subcommand's configuration (the run name defaults to the last
    recipe file's name)."""
    name = config.get("run_name")
    if not name:
        files = [Path(str(p)) for p in config.get("config") or []]
        name = files[-1].stem if files else "vlkit"
    return Path(config.get("runs_dir") or "runs") / name


def register_config_types() -> None:
    """Teach jsonargparse the part configurations (:class:`vlkit.config.PartConfig` subclasses):
    a YAML mapping ``{name: ..., <argument>: ...}`` or a bare name is parsed, checked and completed
    with the builder's defaults, and ``--print_config`` prints every argument."""
    from jsonargparse.typing import get_registered_type, register_type

    from vlkit.fusion import FusionConfig
    from vlkit.models import DecoderConfig, HeadConfig
    from vlkit.text import TextEncoderConfig
    from vlkit.vision import ImageEncoderConfig

    for config in (ImageEncoderConfig, TextEncoderConfig, FusionConfig, HeadConfig, DecoderConfig):
        if get_registered_type(config) is None:
            register_type(config, config.to_dict, config.parse)


def _split_part_edits(args: list[str]) -> tuple[dict[str, dict], list[str]]:
    """``({part: {argument: value}}, the other args)`` from ``--model.init_args.<part>.<argument>``
    options (``--opt value`` or ``--opt=value``; values read as YAML, as jsonargparse reads them)."""
    edits: dict[str, dict] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        key, _, inline = arg.partition("=")
        parts = key.split(".")
        if key.startswith("--model.init_args.") and len(parts) == 4 and parts[2] in PART_ARGUMENTS:
            if inline or "=" in arg:
                value, i = inline, i + 1
            elif i + 1 < len(args):
                value, i = args[i + 1], i + 2
            else:
                rest.append(arg)
                i += 1
                continue
            edits.setdefault(parts[2], {})[parts[3]] = yaml.safe_load(value)
            continue
        rest.append(arg)
        i += 1
    return edits, rest


def _read_recipe(path: Path) -> dict[str, Any] | None:
    """A recipe file's YAML mapping, or None for a file that is not one (LightningCLI reports it)."""
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return content if isinstance(content, dict) else None


#: The recipes that ship with vlkit (``recipes/`` at the top of a checkout links here).
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def packaged_recipe(value: str) -> Path:
    """``value`` as a recipe path: itself when that file exists, else the packaged recipe it names
    (``recipes/vqa/easy_vqa_parallel.yaml`` or ``vqa/easy_vqa_parallel.yaml``, from
    :data:`RECIPES`), so the README's commands also work outside a checkout; else itself (a YAML
    string, or a missing file that LightningCLI reports)."""
    path = Path(value)
    if path.is_file() or "\n" in value or not value.endswith((".yaml", ".yml")):
        return path
    relative = Path(*path.parts[1:]) if path.parts[:1] == ("recipes",) else path
    packaged = RECIPES / relative
    if not relative.is_absolute() and packaged.is_file():
        log.info("%s: using the recipe that ships with vlkit, %s", value, packaged)
        return packaged
    return path


def list_recipes() -> list[str]:
    """The packaged recipes, as ``recipes/<task>/<name>.yaml`` (what ``--config`` accepts anywhere)."""
    return sorted(f"recipes/{p.relative_to(RECIPES).as_posix()}" for p in RECIPES.glob("*/*.yaml"))


def expand_recipe_bases(args: list[str]) -> list[str]:
    """``args`` with every ``--config RECIPE`` (or ``-c``) whose recipe has ``base: BASE`` turned into
    ``--config BASE`` (recursively, the base's own base first) and the recipe's text without its
    ``base:`` line, so the base loads first, the recipe overrides it, and the configuration printed
    or saved stands alone. The run is named after the recipe file (``--run_name``, which a later
    option or a ``run_name:`` in the recipe overrides).

    Raises:
        ValueError: a base that does not exist, or recipes that extend each other in a circle.
    """
    result: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        value = None
        if arg in ("--config", "-c") and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif arg.startswith(("--config=", "-c=")):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            result.append(arg)
            i += 1
            continue
        chain: list[tuple[Path, dict[str, Any] | None]] = []  # each recipe with its content, read once
        path: Path | None = packaged_recipe(value)
        value = str(path)
        while path is not None and path.is_file():
            if path.resolve() in [p.resolve() for p, _ in chain]:
                raise ValueError(f"recipes extend each other in a circle: {[str(p) for p, _ in chain]}")
            content = _read_recipe(path)
            chain.append((path, content))
            base = (
                None if content is None or content.get("base") is None else path.parent / str(content["base"])
            )
            if base is not None and not base.is_file():
                raise ValueError(f"recipe {str(path)!r} extends {str(base)!r}, which does not exist")
            path = base
        if len(chain) < 2:  # no base: the file (or a YAML string, or a missing file) as given
            result += ["--config", value]
            continue
        result += ["--run_name", chain[0][0].stem]
        for recipe, content in reversed(chain):
            if content is None or "base" not in content:  # the base at the root: its file as it is
                result += ["--config", str(recipe)]
            else:  # the recipe's text without its base: key
                rest = {key: item for key, item in content.items() if key != "base"}
                result += ["--config", yaml.safe_dump(rest, sort_keys=False)]
    return result


def cli_main(args: list[str] | None = None, run: bool = True) -> VLKitCLI:
    """Run Lightning's CLI (``fit``/``validate``/``test``) on ``args`` (``sys.argv[1:]`` if None).

    With ``run=False``, ``args`` hold no subcommand and the CLI only builds the trainer, task and
    DataModule of that configuration (``cli.trainer``, ``cli.model``, ``cli.datamodule``).
    """
    from pytorch_lightning import LightningDataModule, LightningModule

    register_config_types()
    args = expand_recipe_bases(list(sys.argv[1:] if args is None else args))
    with warnings.catch_warnings():
        # LightningCLI warns when given args while sys.argv has some; these are that command line
        # with its recipe bases expanded, not a mistake
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return VLKitCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=True,  # --optimizer / --lr_scheduler replace the task's own choice
            parser_kwargs={
                "description": "vlkit fit | validate | test: train or evaluate a task from a recipe"
            },
        )
