"""The ``finpercep`` command. Each sub-command lives in ``finpercep_hf.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int`` (the exit code)."""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order `finpercep --help` lists them.
COMMAND_MODULES = ("quickstart", "init_rm", "score", "evaluate", "probe", "build_fgr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finpercep",
        description="FinPercep-RM: fine-grained reward model, FGR dataset and co-evolutionary curriculum (Real-ISR).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"finpercep_hf.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
