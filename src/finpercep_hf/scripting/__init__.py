"""Helpers of the entry points (``training_scripts/``, ``finpercep`` sub-commands, ``benchmarks/``): argument
parsing over the package's config dataclasses, exit codes, and the build steps two scripts share. Top layer: it
imports any other part of the package; nothing in the package imports it except ``commands``."""

from .arguments import (
    EXIT_BAD_INPUT,
    EXIT_CODES_HELP,
    EXIT_LOAD_ERROR,
    EXIT_OK,
    EXIT_OUTPUT_ERROR,
    argument_view,
    config_from_view,
    dataclasses_from_namespace,
    exit_on_bad_input,
    parse_arguments,
)

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
