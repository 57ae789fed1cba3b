"""Argument parsing shared by every entry point: training scripts, ``finpercep`` sub-commands and benchmarks.

Every flag is a dataclass field (``--crop_size``; transformers' `HfArgumentParser` also accepts ``--crop-size``),
so its name, default and help text exist once. A `ValueError` raised while the dataclasses are built (their
``__post_init__`` validation) is one line on stderr and exit code 2, before any model loads.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from transformers import HfArgumentParser

# Exit codes of every entry point (documented in each ``--help`` and in README).
EXIT_OK = 0
EXIT_LOAD_ERROR = 1  # a model, metric or generator could not be loaded
EXIT_BAD_INPUT = 2  # bad options or config values, unreadable or oversized inputs
EXIT_OUTPUT_ERROR = 3  # the output directory cannot be written (not a directory, no permission, disk full)
EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 a model, metric or generator could not be loaded; 2 bad options, config values or "
    "input files (each reported on its own line, the readable inputs still processed); 3 the output directory "
    "cannot be written (an existing file, no permission, disk full)."
)


def parse_arguments(dataclass_types: Sequence[type], argv: Sequence[str] | None = None, **parser_kwargs) -> tuple:
    """Parse ``argv`` (default: ``sys.argv[1:]``) into one instance of each dataclass.

    A `ValueError` from a dataclass's validation exits with code 2 and one ``error: ...`` line on stderr.
    """
    parser = HfArgumentParser(dataclass_types, **parser_kwargs)
    try:
        return tuple(parser.parse_args_into_dataclasses(args=argv))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


@contextmanager
def exit_on_bad_input() -> Iterator[None]:
    """Turn a `ValueError` raised inside the block (bad data paths, columns, values) into one ``error: ...`` line on
    stderr and exit code 2."""
    try:
        yield
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def dataclasses_from_namespace(namespace: Any, dataclass_types: Sequence[type]) -> tuple:
    """Build each dataclass from the same-named attributes of an argparse namespace (a sub-command's)."""
    built = []
    for dataclass_type in dataclass_types:
        names = [item.name for item in dataclasses.fields(dataclass_type) if item.init]
        built.append(dataclass_type(**{name: getattr(namespace, name) for name in names if hasattr(namespace, name)}))
    return tuple(built)


def _as_list_type(annotation: Any) -> Any:
    """``tuple[X, ...]`` / ``tuple[X, X]`` -> ``list[X]`` (argparse's ``nargs="+"``), through ``| None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [_as_list_type(member) for member in typing.get_args(annotation)]
        return typing.Union[tuple(members)]  # noqa: UP007 (built from a runtime tuple of types)
    if origin is tuple:
        return list[typing.get_args(annotation)[0]]
    return annotation


def argument_view(
    config_class: type,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    defaults: dict[str, Any] | None = None,
    help_notes: dict[str, str] | None = None,
) -> type:
    """A dataclass with the fields of ``config_class`` (names, help, defaults) that `HfArgumentParser` can read.

    Tuple fields become lists (``--area_fractions 0.1 0.2``); only the fields in ``include`` (default: all) and not
    in ``exclude`` (nested configs) are kept; ``defaults`` replaces defaults of the view only (e.g. ``None`` = "not
    given", so that a preset fills them); ``help_notes`` are appended to a field's help. Build the config with
    ``config_class(**view_values)``.
    """
    hints = typing.get_type_hints(config_class)
    defaults, help_notes = defaults or {}, help_notes or {}
    view_fields = []
    for item in dataclasses.fields(config_class):
        if not item.init or item.name in exclude or (include is not None and item.name not in include):
            continue
        metadata = dict(item.metadata)
        if item.name in help_notes:
            metadata["help"] = f"{metadata.get('help', '')} {help_notes[item.name]}".strip()
        annotation = _as_list_type(hints[item.name])
        if item.name in defaults:
            default = defaults[item.name]
            if default is None:
                annotation = annotation | None
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            default = item.default
        if isinstance(default, tuple):
            default = list(default)
        if isinstance(default, list):
            spec = dataclasses.field(default_factory=lambda value=default: list(value), metadata=metadata)
        elif default is dataclasses.MISSING:
            spec = dataclasses.field(metadata=metadata)
        else:
            spec = dataclasses.field(default=default, metadata=metadata)
        view_fields.append((item.name, annotation, spec))
    return dataclasses.make_dataclass(f"{config_class.__name__}Arguments", view_fields)


def config_from_view(config_class: type, values: Any, factory: Callable[..., Any] | None = None) -> Any:
    """``config_class`` built (by ``factory``, default the class; e.g. a preset classmethod) from an `argument_view`
    instance or dict: lists of tuple fields become tuples again, ``None`` values are left out (the config's default
    or preset applies)."""
    hints = typing.get_type_hints(config_class)
    values = values if isinstance(values, dict) else dataclasses.asdict(values)
    kwargs = {}
    for name, value in values.items():
        if value is None:
            continue
        is_tuple = tuple in (typing.get_origin(hints[name]), *map(typing.get_origin, typing.get_args(hints[name])))
        kwargs[name] = tuple(value) if is_tuple and isinstance(value, list) else value
    return (factory or config_class)(**kwargs)


__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CODES_HELP",
    "EXIT_LOAD_ERROR",
    "EXIT_OK",
    "EXIT_OUTPUT_ERROR",
    "argument_view",
    "config_from_view",
    "dataclasses_from_namespace",
    "exit_on_bad_input",
    "parse_arguments",
]
