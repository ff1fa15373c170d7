"""The `bplab` command: one entry point whose subcommands live in the experiment modules.

Each module named below has ``register(subparsers)``, which adds its subcommands and sets
``func`` on them. Modules that use PyTorch import it inside their command functions, so that
``bplab --help`` and the NumPy commands work without torch installed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from bplab import __version__
from bplab.errors import BplabError

# Modules that add top-level commands (moons, demo, mnist, study, train, voc, ...).
COMMAND_MODULES = [
    "bplab.experiments.moons",
    "bplab.experiments.mnist_numpy",
    "bplab.experiments.study",
    "bplab.experiments.torch_train",
    "bplab.experiments.voc",
]
# Modules that add `bplab data ...` subcommands.
DATA_COMMAND_MODULES = [
    "bplab.experiments.data_commands",
    "bplab.experiments.voc_data_commands",
]

# Optional packages some commands import, and how to install them.
OPTIONAL_MODULES = {
    "torch": "pip install 'bplab[torch]'",
    "torchvision": "pip install 'bplab[torch]'",
    "onnx": "pip install onnx onnxruntime",
}


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), naming the bad argument."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser from the command modules."""
    parser = OneLineErrorParser(
        prog="bplab",
        description="Neural networks from a NumPy back-propagation engine to PyTorch models.",
    )
    parser.add_argument("--version", action="version", version=f"bplab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineErrorParser
    )
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)

    report = subparsers.add_parser("report", help="write report.html for a run folder")
    report.add_argument("run_dir", help="a run folder, e.g. runs/moons/20260101-120000")
    report.set_defaults(func=_report_command)

    data = subparsers.add_parser("data", help="download, inspect and build datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION",
                                   parser_class=OneLineErrorParser)
    data.set_defaults(func=lambda args: data.print_help() or 2)
    for name in DATA_COMMAND_MODULES:
        importlib.import_module(name).register(data_sub)
    return parser


def _report_command(args: argparse.Namespace) -> int:
    from bplab.report.html import write_html_report

    print(f"report: {write_html_report(args.run_dir)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = args.func(args)
    except BplabError as exc:
        print(f"bplab: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        print(f"bplab: error: out of memory ({exc}); use a smaller model, batch or dataset",
              file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name not in OPTIONAL_MODULES:
            raise
        print(f"bplab: error: `bplab {args.command}` needs {exc.name}, which is not installed; "
              f"install it with: {OPTIONAL_MODULES[exc.name]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # A command may pass a note, such as where a partial run was kept.
        note = f": {exc}" if str(exc) else ""
        print(f"bplab: interrupted{note}", file=sys.stderr)
        return 130
    return int(status or 0)
