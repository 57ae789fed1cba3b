"""The ``finpercep`` command. Each sub-command lives in ``finpercep_hf.commands.<name>`` and exposes ``NAME``,
``HELP``, ``DESCRIPTION``, ``ARGUMENTS`` (the dataclasses its flags come from, parsed by `HfArgumentParser`) and
``run(*arguments) -> int`` (the exit code, see `finpercep_hf.scripting.EXIT_CODES_HELP`)."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from transformers import HfArgumentParser

from .scripting import EXIT_BAD_INPUT, EXIT_CODES_HELP, dataclasses_from_namespace

# Sub-command modules, in the order `finpercep --help` lists them.
COMMAND_MODULES = ("quickstart", "init_rm", "score", "evaluate", "probe", "build_fgr")


def _command_modules() -> dict[str, ModuleType]:
    modules = [importlib.import_module(f"finpercep_hf.commands.{name}") for name in COMMAND_MODULES]
    return {module.NAME: module for module in modules}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finpercep",
        description="FinPercep-RM: fine-grained reward model, FGR dataset and co-evolutionary curriculum (Real-ISR).",
        epilog=EXIT_CODES_HELP,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=HfArgumentParser)
    for name, module in _command_modules().items():
        subparsers.add_parser(
            name, help=module.HELP, description=module.DESCRIPTION, epilog=EXIT_CODES_HELP,
            dataclass_types=module.ARGUMENTS,
        )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    namespace = build_parser().parse_args(argv)
    module = _command_modules()[namespace.command]
    try:
        arguments = dataclasses_from_namespace(namespace, module.ARGUMENTS)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return module.run(*arguments)
    except SystemExit as exit_:  # `output_errors_exit` and friends: the code is the return value, as for `run`
        return exit_.code


__all__ = ["COMMAND_MODULES", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
