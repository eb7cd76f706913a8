"""Self-contained tasks: checkpoints and ``save_pretrained`` folders that rebuild the task alone.

A task is built from plain configuration, saved as its hyper-parameters; rebuilding it passes two
explicit arguments and nothing hidden: ``pretrained=False`` (the weights come from the checkpoint)
and ``local_files`` (folders holding the saved configuration and tokenizer files of its Hugging
Face parts). :class:`SelfContainedTask` is the part of :class:`vlkit.tasks.TrainingTask` that does
this; the file formats are in :mod:`vlkit.tasks.checkpoint`.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download

from vlkit.tasks.checkpoint import (
    CHECKPOINT_FORMAT,
    check_format,
    check_plain_hyperparameters,
    default_file_mode,
    hf_files,
    load_checkpoint,
    read_hf_folders,
    rng_states,
    set_rng_states,
    write_hf_files,
    written_hf_files,
)
from vlkit.text.hf import HFTextEncoder

__all__ = ["REBUILD_ARGUMENTS", "SelfContainedTask", "write_model_card"]

#: Task arguments that say how to build the task now (where its weights come from), not what it
#: is: never saved as hyper-parameters.
REBUILD_ARGUMENTS = ("pretrained", "local_files")


class SelfContainedTask:
    """Checkpoints and ``save_pretrained`` folders that rebuild the task from themselves alone.

    A mixin of :class:`vlkit.tasks.TrainingTask` (a LightningModule with ``task_name``, ``hparams``,
    ``local_files`` and ``_hf_files_cache``), first among its bases: its ``on_save_checkpoint``,
    ``on_load_checkpoint`` and ``load_from_checkpoint`` replace LightningModule's, and
    ``huggingface_hub``'s ``PyTorchModelHubMixin`` (after it) calls its ``_save_pretrained`` /
    ``_from_pretrained``.
    """

    # -- checkpoints ---------------------------------------------------------------------------
    def hf_files(self) -> dict[str, dict[str, bytes]]:
        """``{name: {file name: bytes}}``: configuration and tokenizer files of the task's Hugging
        Face parts (its ``HFTextEncoder`` modules and ``tokenizer_name``), read once."""
        if self._hf_files_cache is None:
            names = {m.name_or_path for m in self.modules() if isinstance(m, HFTextEncoder)}
            if self.hparams.get("tokenizer_name"):
                names.add(self.hparams.tokenizer_name)
            self._hf_files_cache = hf_files(names, self.local_files) if names else {}
        return self._hf_files_cache

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add what makes the checkpoint self-contained and resumable: the task's name and format,
        the configuration and tokenizer files of its Hugging Face parts and the random state."""
        checkpoint["vlkit_task"] = self.task_name
        checkpoint["vlkit_format"] = CHECKPOINT_FORMAT
        checkpoint["vlkit_hf_files"] = self.hf_files()
        checkpoint["vlkit_rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainer = self._trainer
        if "vlkit_rng_states" in checkpoint and trainer is not None and trainer.state.fn == "fit":
            set_rng_states(checkpoint["vlkit_rng_states"])

    @classmethod
    def class_names(cls) -> tuple[str, ...]:
        """The dotted names under which a recipe or a checkpoint may name this class
        (``vlkit.tasks.VQATask``, ``vlkit.tasks.vqa.VQATask``)."""
        return (f"vlkit.tasks.{cls.__name__}", f"{cls.__module__}.{cls.__qualname__}")

    @classmethod
    def from_hyperparameters(
        cls,
        hparams: Mapping[str, Any],
        pretrained: bool = True,
        local_files: Mapping[str, str] | None = None,
    ):
        """The task built from saved hyper-parameters (plain data, as :meth:`save_configuration`
        saved them; Lightning's ``_class_path`` / ``_instantiator`` entries are ignored: nothing
        in them is imported or run).

        Raises:
            ValueError: a hyper-parameter this task does not take (the message lists them).
        """
        kwargs = {key: value for key, value in hparams.items() if not key.startswith("_")}
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", *REBUILD_ARGUMENTS}
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise ValueError(
                f"{cls.__name__} takes no argument(s) {unknown} (it takes {sorted(accepted)}): these "
                "hyper-parameters were written by another task or another vlkit version"
            )
        return cls(**kwargs, pretrained=pretrained, local_files=local_files)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], checkpoint: Mapping[str, Any] | None = None):
        """The task of a checkpoint written by ``vlkit fit``, rebuilt from the file alone (no Hub
        download, no packaged weights), in eval mode on the CPU.

        Raises:
            FileNotFoundError: no such file.
            pickle.UnpicklingError: a checkpoint that holds code (refused, not run).
            ValueError: not a checkpoint of this task, or one written by an earlier vlkit.
        """
        source = f"checkpoint {os.fspath(path)!r}"
        checkpoint = load_checkpoint(path) if checkpoint is None else checkpoint
        if "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
            raise ValueError(f"{source} is not a Lightning checkpoint of a vlkit task")
        found = checkpoint.get("vlkit_task")
        if cls.task_name and found != cls.task_name:
            raise ValueError(f"{source} holds a {found!r} task; load it with that task's class")
        check_format(checkpoint.get("vlkit_format"), source)
        check_plain_hyperparameters(checkpoint["hyper_parameters"], source, cls.class_names())
        files = checkpoint.get("vlkit_hf_files", {})
        with written_hf_files(files) as folders:
            task = cls.from_hyperparameters(
                checkpoint["hyper_parameters"], pretrained=False, local_files=folders
            )
        task.load_state_dict(checkpoint["state_dict"])
        task.local_files = {}  # the folders are gone; the files themselves are kept
        task._hf_files_cache = files  # saved again as they came, without fetching anything
        return task.eval()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | os.PathLike[str], *args: Any, **kwargs: Any):
        """:meth:`from_checkpoint` (Lightning's loader would build the parts with their pretrained
        weights and import what the hyper-parameters name).

        Raises:
            TypeError: other arguments than the path (overrides are not supported).
        """
        if args or set(kwargs) - {"map_location", "weights_only", "strict"}:
            raise TypeError(
                "vlkit tasks load from the checkpoint alone: load_from_checkpoint(path); change settings "
                "on the returned task"
            )
        task = cls.from_checkpoint(checkpoint_path)
        location = kwargs.get("map_location")
        return task.to(location) if isinstance(location, str | torch.device) else task

    # -- save_pretrained / from_pretrained (Hugging Face conventions) ---------------------------
    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> Any:
        """``PyTorchModelHubMixin.save_pretrained``, with vlkit's model card (``README.md``, see
        :func:`write_model_card`) and every file readable as any other file the user writes
        (mode ``0o666`` less the umask; safetensors writes ``0o600``)."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        mode = default_file_mode()
        for path in Path(save_directory).rglob("*"):
            if path.is_file():
                path.chmod(mode)
        return result

    def _save_pretrained(self, save_directory: Path) -> None:
        """``model.safetensors`` (the weights, by the mixin), ``config.json`` (the hyper-parameters:
        part configurations, preprocessing, vocabularies), ``vlkit.json`` (the task, the format and
        the folders of the Hugging Face parts' files) and ``hf/<i>/`` (those files)."""
        super()._save_pretrained(save_directory)
        save_directory = Path(save_directory)
        folders = write_hf_files(self.hf_files(), save_directory / "hf")
        info = {
            "task": self.task_name,
            "format": CHECKPOINT_FORMAT,
            "hf_files": {
                name: Path(folder).relative_to(save_directory).as_posix() for name, folder in folders.items()
            },
        }
        (save_directory / "vlkit.json").write_text(json.dumps(info, indent=1))
        write_model_card(save_directory, self)
        config = {k: v for k, v in self.hparams.items() if not k.startswith("_")}
        (save_directory / "config.json").write_text(json.dumps(config, indent=1))

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ):
        """The task saved by :meth:`save_pretrained` in a folder or a Hub repository, rebuilt
        from it alone, in eval mode.

        Raises:
            FileNotFoundError: a folder without ``vlkit.json``.
            ValueError: the folder was saved by another task class or an earlier vlkit.
        """
        from safetensors.torch import load_model

        folder = (
            model_id
            if os.path.isdir(model_id)
            else snapshot_download(
                repo_id=model_id,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
            )
        )
        info_path = Path(folder) / "vlkit.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{model_id!r} has no vlkit.json: not saved by vlkit's save_pretrained")
        info = json.loads(info_path.read_text())
        if info.get("task") != cls.task_name:
            raise ValueError(
                f"{model_id!r} holds a {info.get('task')!r} task; load it with that task's class"
            )
        check_format(info.get("format"), f"the folder {model_id!r}")
        weights = Path(folder) / "model.safetensors"
        if not weights.is_file() or not (Path(folder) / "config.json").is_file():
            raise FileNotFoundError(
                f"{model_id!r} lacks model.safetensors or config.json: not a complete vlkit export"
            )
        files = read_hf_folders(folder, info.get("hf_files", {}))
        hparams = json.loads((Path(folder) / "config.json").read_text())
        check_plain_hyperparameters(hparams, f"{os.fspath(Path(folder) / 'config.json')!r}")
        with written_hf_files(files) as folders:
            task = cls.from_hyperparameters(hparams, pretrained=False, local_files=folders)
        # load_model restores tensors that safetensors saved once for several names (tied weights)
        load_model(task, str(weights), strict=strict, device=map_location)
        task.local_files = {}
        task._hf_files_cache = files  # saved again as they came, without fetching anything
        return task.eval()


def _part_line(name: str, value: Any) -> str:
    if isinstance(value, Mapping) and "name" in value:
        options = ", ".join(f"{k}={v}" for k, v in value.items() if k != "name" and v is not None)
        return f"- {name}: `{value['name']}` ({options})"
    return f"- {name}: `{value}`"


def write_model_card(
    folder: str | os.PathLike[str],
    task: Any,
    metrics: Mapping[str, float] | None = None,
    graph: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``folder/README.md``: what the model is (task, parts, preprocessing, labels), how to
    load it and, when given, the metrics of the run that trained it (e.g. ``test/vqa_acc``) and
    the graph file written beside the weights (``{"file", "format", "max_abs_difference"}``, see
    :func:`vlkit.tasks.graph_export.export_graph`)."""
    hparams = {k: v for k, v in task.hparams.items() if not k.startswith("_")}
    parts = [
        _part_line(name, hparams[name])
        for name in ("image_encoder", "text_encoder", "decoder", "fusion", "head")
        if hparams.get(name)
    ]
    labels = hparams.get("answers") or hparams.get("classes") or []
    preprocessing = hparams.get("preprocessing") or {}
    example = {
        "vqa": 'task.predict("image.png", questions="what color is the shape?")',
        "captioning": 'task.predict("image.png")',
        "sentiment": 'task.predict("image.png", texts="what a day")',
    }.get(task.task_name, 'task.predict("image.png")')
    lines = [
        "---",
        "library_name: vlkit",
        f"tags: [vlkit, {task.task_name}, vision-language]",
        "---",
        f"# {type(task).__name__} ({task.task_name}), trained with vlkit",
        "",
        "## Model",
        *parts,
        (
            f"- images: resized to {preprocessing.get('image_size', '?')} × {preprocessing.get('image_size', '?')} "
            f"pixels, normalised with mean {preprocessing.get('mean')} and std {preprocessing.get('std')}"
        ),
    ]
    if labels:
        shown = ", ".join(map(str, labels[:20])) + (", ..." if len(labels) > 20 else "")
        lines.append(f"- {len(labels)} {'answers' if task.task_name == 'vqa' else 'classes'}: {shown}")
    if metrics:
        lines += ["", "## Metrics of the run that trained it", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items())]
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        "from vlkit.tasks import load_pretrained",
        "",
        'task = load_pretrained("<this folder or Hub repository>")',
        example,
        "```",
        "",
        "or `vlkit predict --ckpt_path <this folder> --image image.png ...`. The folder holds the weights",
        "(`model.safetensors`), the configuration (`config.json`, `vlkit.json`) and any Hugging Face",
        "part's configuration and tokenizer files (`hf/`); nothing else is downloaded.",
        "",
    ]
    if graph:
        lines += _graph_lines(task, graph)
    path = Path(folder) / "README.md"
    path.write_text("\n".join(lines))
    return path


def _graph_lines(task: Any, graph: Mapping[str, Any]) -> list[str]:
    """The model card's section on the exported graph: its inputs, outputs and how to run it."""
    from vlkit.tasks.graph_export import graph_module, text_length

    _, inputs, outputs = graph_module(task)
    size = getattr(task.preprocessing, "image_size", "S")
    shapes = {
        "image": f"(b, 3, {size}, {size}) float32, normalised as above",
        "token_ids": f"(b, {text_length(task)}) int64, right-padded with 0",
        "token_mask": f"(b, {text_length(task)}) bool, True on real tokens",
    }
    run = (
        f'onnxruntime.InferenceSession("{graph["file"]}").run(None, {{"image": ..., ...}})'
        if graph["format"] == "onnx"
        else f'torch.export.load("{graph["file"]}").module()(image, ...)'
    )
    return [
        f"## The network as a graph ({graph['format']})",
        "",
        f"`{graph['file']}` runs without vlkit; its outputs were within {graph['max_abs_difference']:.2g} of",
        "PyTorch's when it was written. Inputs (the batch size b is dynamic):",
        "",
        *[f"- `{name}`: {shapes[name]}" for name in inputs],
        f"- outputs: {', '.join(f'`{name}`' for name in outputs)}"
        + (" (greedy caption: token ids, log-probability, length)" if task.task_name == "captioning" else ""),
        "",
        f"Run it with `{run}`.",
        "",
    ]
