"""Self-contained checkpoints, loaded safely.

A checkpoint written by a vlkit task carries, besides the weights: the task (``vlkit_task``), the
format (``vlkit_format``), the task's hyper-parameters (the part configurations, the
preprocessing, the vocabularies: plain data), and for every Hugging Face model or tokenizer the
task uses, that model's ``config.json`` and tokenizer files (``vlkit_hf_files``; no weights, which
are in the state dict). :func:`load_task` rebuilds the task from the checkpoint alone, by passing
explicit arguments: ``pretrained=False`` (no backbone or Hub weights are fetched) and
``local_files`` (folders holding the saved Hugging Face files). Only
``torch.load(weights_only=True)`` is used, so a checkpoint that holds code is refused.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_format",
    "check_plain_hyperparameters",
    "default_file_mode",
    "hf_files",
    "load_checkpoint",
    "rng_states",
    "set_rng_states",
    "written_hf_files",
]

#: ``vlkit_format`` of the checkpoints this version writes: models configured as parts.
CHECKPOINT_FORMAT = 2


def default_file_mode() -> int:
    """The mode a new file gets from ``open``: ``0o666`` less the process's umask (read without
    changing it for good)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def load_checkpoint(path: str | os.PathLike[str], mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint file with ``torch.load(weights_only=True)`` on the CPU.

    ``mmap=True`` maps the tensors' storage instead of reading it (for a look at the
    hyper-parameters without reading the weights); a file in torch's legacy (non-zip) format,
    which cannot be mapped, is read whole.

    Raises:
        FileNotFoundError: no such file.
        pickle.UnpicklingError: the file holds more than tensors and plain containers (e.g.
            code that would run when unpickled): it is refused, not executed.
        ValueError: the file is empty, truncated or not a PyTorch checkpoint.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {os.fspath(path)!r} does not exist")
    try:
        if mmap and zipfile.is_zipfile(path):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()
        reason = detail[0].strip() if detail else type(err).__name__
        if "Unsupported global" in str(err):  # names a class or function: code that would run
            raise pickle.UnpicklingError(
                f"checkpoint {os.fspath(path)!r} is refused: it holds objects other than tensors and "
                f"plain data, which could run code when read ({reason})"
            ) from err
        raise ValueError(_unreadable(path, f"{type(err).__name__}: {reason}")) from err
    except (EOFError, RuntimeError, OSError) as err:  # empty, truncated or another format
        raise ValueError(_unreadable(path, f"{type(err).__name__}: {str(err).strip()[:200]}")) from err


def _unreadable(path: str | os.PathLike[str], reason: str) -> str:
    size = Path(path).stat().st_size
    return (
        f"checkpoint {os.fspath(path)!r} ({size} bytes) cannot be read: it is empty, truncated or not a "
        f"PyTorch checkpoint ({reason})"
    )


def check_format(found: Any, source: str) -> None:
    """Refuse what an earlier vlkit wrote (models named by a builder and a flat ``model_args``).

    Raises:
        ValueError: ``found`` (the ``vlkit_format`` read from ``source``) is not
            :data:`CHECKPOINT_FORMAT`; the message says what to do.
    """
    if found != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{source} was written by an earlier vlkit (format {found!r}; this version reads format "
            f"{CHECKPOINT_FORMAT}, where a model is configured as its parts image_encoder, text_encoder, "
            "fusion and head). Train it again with a current recipe (vlkit fit --config recipes/...), or "
            "install the vlkit release that wrote it to use it"
        )


#: Keys with which jsonargparse (behind LightningCLI) imports and instantiates a class; saved
#: hyper-parameters never hold them (Lightning's own top-level ``_class_path`` is checked apart).
CODE_KEYS = frozenset({"class_path", "init_args", "dict_kwargs", "_class_path", "__path__", "_instantiator"})
_PLAIN_TYPES = (str, int, float, bool, type(None))


def check_plain_hyperparameters(
    hparams: Mapping[str, Any], source: str, task_classes: Iterable[str] = ()
) -> None:
    """Refuse saved hyper-parameters that are not plain data.

    A task's hyper-parameters are strings, numbers, booleans, None, lists and string-keyed
    mappings of them. A key that jsonargparse would import (``class_path``, ``init_args``,
    ``dict_kwargs``, ...) anywhere in them, or any other kind of object, is refused before
    anything reads them, so that a forged checkpoint or ``config.json`` cannot name code to run.

    Args:
        hparams: the hyper-parameters read from ``source``.
        source: the file, for the message.
        task_classes: the dotted class names accepted for Lightning's top-level ``_class_path``
            (and ``_instantiator`` is then accepted at the top level too); empty refuses both.

    Raises:
        ValueError: names the offending key's path, e.g. ``image_encoder.x.class_path``.
    """
    allowed_top = {"_class_path", "_instantiator"} if task_classes else set()
    if not isinstance(hparams, Mapping):
        raise ValueError(  # noqa: TRY004 — bad data in a file, not a programming error
            f"{source}: its hyper-parameters are a {type(hparams).__name__}, not a mapping"
        )
    if "_class_path" in hparams and hparams["_class_path"] not in set(task_classes):
        raise ValueError(
            f"{source} names the model class {hparams['_class_path']!r}; a vlkit checkpoint names one of "
            f"{sorted(task_classes)}: refusing to import it (the file was not written by vlkit, or was edited)"
        )
    if "_instantiator" in hparams and not isinstance(hparams["_instantiator"], str):
        raise ValueError(f"{source}: its _instantiator is not a name: refusing it")

    def walk(value: Any, where: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                path = f"{where}.{key}" if where else str(key)
                if not isinstance(key, str):
                    raise ValueError(  # noqa: TRY004 — bad data in a file
                        f"{source}: the hyper-parameter key {path!r} is not a string: refusing it"
                    )
                if key in CODE_KEYS and not (where == "" and key in allowed_top):
                    raise ValueError(
                        f"{source} holds {key!r} at {path!r}: saved hyper-parameters are plain data, and "
                        "a key that would import and instantiate a class is refused (the file was not "
                        "written by vlkit, or was edited)"
                    )
                walk(item, path)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
        elif not isinstance(value, _PLAIN_TYPES):
            raise ValueError(  # noqa: TRY004 — bad data in a file
                f"{source}: the hyper-parameter {where!r} is a {type(value).__name__}, not plain data "
                "(strings, numbers, booleans, lists, mappings): refusing it"
            )

    walk(hparams, "")


def _file_name(name: str) -> str:
    """``name`` if it is a plain file name (no folder, not ``.`` or ``..``).

    Raises:
        ValueError: a name with a path in it, which would be written outside its folder, or a code
            file (``.py``, ``.pyc``, ``.so``), which a checkpoint never needs.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"refusing the saved file name {name!r}: not a plain file name")
    if name.endswith((".py", ".pyc", ".so")):
        raise ValueError(f"refusing the saved file {name!r}: a checkpoint carries configuration, not code")
    return name


def hf_files(
    names: Iterable[str], local_files: Mapping[str, str] | None = None
) -> dict[str, dict[str, bytes]]:
    """``{name: {file name: bytes}}``: the configuration and tokenizer files of Hugging Face models.

    Args:
        names: Hub ids or local folders (the packaged MiniLM's id resolves to its package).
        local_files: ``{name: folder}`` to read some of them from instead (as a rebuilt task
            has them).
    """
    from transformers import AutoConfig, AutoTokenizer

    from vlkit.text.hf import resolve_hf_model

    result: dict[str, dict[str, bytes]] = {}
    for name in sorted(set(names)):
        path = (local_files or {}).get(name) or resolve_hf_model(name)
        with tempfile.TemporaryDirectory() as folder:
            AutoConfig.from_pretrained(path).save_pretrained(folder)
            with contextlib.suppress(OSError, ValueError):  # a model may come without a tokenizer
                AutoTokenizer.from_pretrained(path).save_pretrained(folder)
            result[name] = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
    return result


def write_hf_files(files: Mapping[str, Mapping[str, bytes]], root: str | os.PathLike[str]) -> dict[str, str]:
    """Write :func:`hf_files` output into ``root/<i>/`` folders; returns ``{name: folder}``.

    Raises:
        ValueError: a file name with a path in it (refused, nothing is written outside ``root``).
    """
    folders = {}
    for i, (name, named_files) in enumerate(sorted(files.items())):
        folder = Path(root) / str(i)
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, data in named_files.items():
            (folder / _file_name(file_name)).write_bytes(data)
        folders[name] = str(folder)
    return folders


@contextlib.contextmanager
def written_hf_files(files: Mapping[str, Mapping[str, bytes]]) -> Iterator[dict[str, str]]:
    """:func:`write_hf_files` into a temporary folder, removed on exit; yields ``{name: folder}``."""
    with tempfile.TemporaryDirectory() as root:
        yield write_hf_files(files, root)


def read_hf_folders(folder: str | os.PathLike[str], named: Mapping[str, str]) -> dict[str, dict[str, bytes]]:
    """The files of ``{name: sub-folder}`` inside a ``save_pretrained`` folder.

    Raises:
        ValueError: a sub-folder outside ``folder`` (refused, nothing is read).
    """
    root = Path(folder).resolve()
    files = {}
    for name, sub in named.items():
        path = (root / sub).resolve()
        if root not in path.parents:
            raise ValueError(f"refusing {sub!r} in vlkit.json: not a folder inside {os.fspath(folder)!r}")
        files[name] = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    return files


def rng_states() -> dict[str, Any]:
    """This process's random states, as types ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` saved (CUDA states only on as many devices)."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    random.setstate(tuple(states["python"][:1]) + (tuple(states["python"][1]),) + tuple(states["python"][2:]))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
