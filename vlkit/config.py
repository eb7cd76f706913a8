"""Typed configurations of model parts, built by one registry per part.

A model is configured as its parts (``image_encoder``, ``text_encoder``, ``fusion``, ``head``,
``decoder``). Each part has a :class:`Registry` of named builders (layer classes) and a
:class:`PartConfig` subclass: the builder's name plus **every** keyword argument it takes, each
checked against the builder's type annotations and completed with its default. So a config is
the whole, printable description of a part, and a mistake in it (an unknown name, an argument
the builder does not take, a value of the wrong type) is a ``ValueError`` that says what is
valid, raised when the config is made, long before training.

Arguments that come from the data or from the other parts (``vocab_size``, ``image_dim``, the
head's ``input_dim``, ...) are not part of a config: they are the registry's ``provided``
arguments, given to :meth:`PartConfig.build` by the model that assembles the parts.

A config is written as a mapping (YAML, checkpoints) by :meth:`PartConfig.to_dict` and read back
by :meth:`PartConfig.parse`, which also takes a bare name::

    FusionConfig.parse({"name": "mcan", "depth": 2})   # every other MCAN argument at its default
    FusionConfig.parse("mfb")
    ImageEncoderConfig.parse({"backbone": "efficientnet_lite0", "freeze": True})  # name "timm"

The builders' own docstrings document the arguments; ``python -c "import vlkit.fusion as f;
print(f.FusionConfig.registry.describe('mcan'))"`` lists them with types and defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields, is_dataclass
from types import MappingProxyType
from typing import Any, ClassVar

__all__ = ["PartConfig", "Registry", "dataclass_from", "to_plain"]


class Registry:
    """Named builders of one part of a model (e.g. every fusion layer by its standard name).

    Args:
        part: what the builders make, for messages (``"fusion"``, ``"text_encoder"``).
        provided: argument names the assembling model supplies at build time (e.g.
            ``("image_dim", "text_dim")``); they are never part of a config. A builder takes
            the ones its signature names.

    Raises:
        ValueError: (``register``) a name registered twice, or a provided argument that is fixed.
    """

    def __init__(self, part: str, provided: tuple[str, ...] = ()) -> None:
        self.part, self.provided = part, tuple(provided)
        self._entries: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}
        self._parsers: dict[str, Any] = {}

    def register(self, name: str, builder: Callable[..., Any], **fixed: Any) -> None:
        """Register ``builder`` (a class or function) under ``name``; ``fixed`` arguments are set
        by the name (e.g. ``order=2`` for ``"mfh"``) and cannot be configured."""
        if name in self._entries:
            raise ValueError(f"{self.part} {name!r} is already registered")
        clash = sorted(set(fixed) & set(self.provided))
        if clash:
            raise ValueError(f"{self.part} {name!r}: {clash} are provided at build time, not fixed")
        self._entries[name] = (builder, dict(fixed))

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> tuple[Callable[..., Any], dict[str, Any]]:
        return self.entry(name)

    def entry(self, name: str) -> tuple[Callable[..., Any], dict[str, Any]]:
        """``(builder, fixed arguments)`` of ``name``.

        Raises:
            ValueError: an unknown name; the message lists the registered ones.
        """
        if name not in self._entries:
            raise ValueError(f"unknown {self.part} {name!r}; valid: {self.names()}")
        return self._entries[name]

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The configurable parameters of ``name``'s builder (not provided, not fixed), in order."""
        builder, fixed = self.entry(name)
        signature = inspect.signature(builder)
        skip = set(self.provided) | set(fixed) | {"self"}
        return {
            p.name: p
            for p in signature.parameters.values()
            if p.name not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def defaults(self, name: str) -> dict[str, Any]:
        """Every configurable argument of ``name`` at its default.

        Raises:
            ValueError: an unknown name, or a builder argument without a default (it must then
                be given in every config).
        """
        params = self.parameters(name)
        required = [n for n, p in params.items() if p.default is inspect.Parameter.empty]
        if required:
            raise ValueError(
                f"{self.part} {name!r} needs the argument(s) {required}: give them in its config"
            )
        return {n: p.default for n, p in params.items()}

    def check(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked against ``name``'s builder and completed with its defaults.

        Types are checked (and strings from a command line converted) by jsonargparse, which
        reads the builder's annotations.

        Raises:
            ValueError: an unknown name, an argument the builder does not take (the message lists
                those it takes), a value of the wrong type, or a missing required argument.
        """
        params = self.parameters(name)
        unknown = sorted(set(options) - set(params))
        if unknown:
            fixed = self.entry(name)[1]
            raise ValueError(
                f"{self.part} {name!r} takes no argument(s) {unknown}; it takes {list(params)}"
                + (f" (the name fixes {fixed})" if fixed else "")
            )
        if not options:
            return self.defaults(name)
        from jsonargparse import ArgumentError, ArgumentParser

        parser = self._parsers.get(name)
        if parser is None:
            builder = self.entry(name)[0]
            parser = ArgumentParser(exit_on_error=False)
            skip = set(inspect.signature(builder).parameters) - set(params)
            if inspect.isclass(builder):
                parser.add_class_arguments(builder, skip=skip, fail_untyped=False, sub_configs=False)
            else:
                parser.add_function_arguments(builder, skip=skip, fail_untyped=False, sub_configs=False)
            self._parsers[name] = parser
        try:
            checked = parser.parse_object(dict(options)).as_dict()
        except (ArgumentError, TypeError, ValueError) as err:  # the argument and what it expected
            message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
            raise ValueError(f"{self.part} {name!r}: {message}") from None
        missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in options]
        if missing:
            raise ValueError(f"{self.part} {name!r} needs the argument(s) {missing}")
        return {n: checked.get(n) for n in params}

    def build(self, name: str, options: Mapping[str, Any], **provided: Any) -> Any:
        """Call ``name``'s builder with ``options``, its fixed arguments and the ``provided``
        arguments its signature takes (the others are ignored)."""
        builder, fixed = self.entry(name)
        unknown = sorted(set(provided) - set(self.provided))
        if unknown:
            raise TypeError(f"{unknown} are not provided arguments of {self.part}s ({list(self.provided)})")
        accepted = inspect.signature(builder).parameters
        given = {k: v for k, v in provided.items() if k in accepted}
        return builder(**given, **fixed, **options)

    def describe(self, name: str) -> str:
        """One line per configurable argument of ``name``: ``name: type = default``."""
        lines = [f"{self.part} {name!r} ({getattr(self.entry(name)[0], '__qualname__', name)}):"]
        for param in self.parameters(name).values():
            default = "" if param.default is inspect.Parameter.empty else f" = {param.default!r}"
            annotation = (
                param.annotation
                if isinstance(param.annotation, str)
                else inspect.formatannotation(param.annotation)
            )
            lines.append(f"  {param.name}: {annotation}{default}")
        return "\n".join(lines)


class PartConfig:
    """The configuration of one model part: a registered ``name`` and every argument of its builder.

    Subclasses set :attr:`registry` (the part's builders) and :attr:`default_name` (used when a
    mapping gives no ``name``). Immutable; read arguments as attributes (``config.depth``) or
    with :attr:`options`.

    Args:
        name: a registered name (:meth:`Registry.names`); None for :attr:`default_name`.
        **options: the builder's arguments; those not given take the builder's defaults.

    Raises:
        TypeError: a name that is not a string.
        ValueError: see :meth:`Registry.check`.
    """

    registry: ClassVar[Registry]
    default_name: ClassVar[str | None] = None

    __slots__ = ("_name", "_options")

    def __init__(self, name: str | None = None, /, **options: Any) -> None:
        name = self.default_name if name is None else name
        if not isinstance(name, str):
            raise TypeError(
                f"a {self.registry.part} config needs a name, one of {self.registry.names()}; got {name!r}"
            )
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_options", MappingProxyType(self.registry.check(name, options)))

    @property
    def name(self) -> str:
        """The registered name of the builder."""
        return self._name

    @property
    def options(self) -> Mapping[str, Any]:
        """Every argument of the builder, read-only."""
        return self._options

    def __getattr__(self, key: str) -> Any:
        try:
            return object.__getattribute__(self, "_options")[key]
        except KeyError:
            raise AttributeError(f"{self.registry.part} {self._name!r} has no argument {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use replace({key}=...)")

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self.to_dict().items())

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), repr(self)))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return f"{type(self).__name__}({self._name!r}{', ' if args else ''}{args})"

    def __reduce__(self):
        return (_rebuild, (type(self), self.to_dict()))

    @classmethod
    def parse(cls, value: PartConfig | Mapping[str, Any] | str | None) -> PartConfig:
        """A config from a config, a mapping ``{name: ..., <argument>: ...}`` (``name`` may be
        left out for :attr:`default_name`) or a bare name; None gives the default name's config.

        Raises:
            TypeError: a value of another kind (not a name, a mapping or this config).
            ValueError: see :meth:`Registry.check`.
        """
        if isinstance(value, cls):
            return value
        if value is None or isinstance(value, str):
            return cls(value)
        if isinstance(value, PartConfig):
            raise TypeError(f"expected a {cls.__name__}, got a {type(value).__name__}")
        if not isinstance(value, Mapping):
            raise TypeError(
                f"a {cls.registry.part} config is a name or a mapping with 'name' and the builder's "
                f"arguments, got {type(value).__name__}: {value!r}"
            )
        options = dict(value)
        return cls(options.pop("name", None), **options)

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., <argument>: <value>, ...}`` in plain Python types (tuples as lists), as
        YAML and ``torch.load(weights_only=True)`` read them."""
        return {"name": self._name, **{k: to_plain(v) for k, v in self._options.items()}}

    def replace(self, **changes: Any) -> PartConfig:
        """A copy with some arguments changed (checked again).

        Raises:
            ValueError: see :meth:`Registry.check`.
        """
        return type(self)(self._name, **{**self._options, **changes})

    def build(self, **provided: Any) -> Any:
        """The part (e.g. an ``nn.Module``), built with the ``provided`` arguments (see
        :class:`Registry`)."""
        return self.registry.build(self._name, self._options, **provided)


def to_plain(value: Any) -> Any:
    """``value`` as plain data, as YAML and ``torch.load(weights_only=True)`` read it: part configs
    and dataclasses as mappings, tuples as lists, recursively."""
    if isinstance(value, PartConfig):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def _rebuild(cls: type[PartConfig], data: dict[str, Any]) -> PartConfig:
    return cls.parse(data)


def dataclass_from(cls: type, value: Any, name: str) -> Any:
    """An instance of the dataclass ``cls`` from itself, its mapping (as a checkpoint saves it) or
    None (its defaults).

    Raises:
        TypeError: neither an instance, a mapping nor None.
        ValueError: a mapping with keys that are not fields (the message lists the fields), or a
            value the dataclass refuses.
    """
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a {cls.__name__} or a mapping, got {value!r}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"{name} has no field(s) {unknown}; fields: {known}")
    return cls(**value)
