"""``pacslab`` command line: sample data, the embedded PACS, the demo, the effective config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pacslab.config import ConfigError, load_config
from pacslab.notebook_run import add_run_command

__all__ = ["main"]


def _samples(args: argparse.Namespace) -> int:
    from pacslab.samples import write_samples

    written = write_samples(Path(args.path), ct_slices=args.ct_slices, size=args.size)
    for name, files in written.items():
        print(f"{name}: {len(files)} files in {Path(args.path) / name}")
    return 0


def _pacs_serve(args: argparse.Namespace) -> int:
    from pacslab.pacs.embedded import serve

    serve(load_config(), seed=Path(args.seed) if args.seed else None)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pacslab.demo import run_demo

    return run_demo(
        Path(args.workdir), lab=not args.no_lab, voila_port=args.voila_port, lab_port=args.lab_port
    )


def _config(_: argparse.Namespace) -> int:
    config = load_config()
    print(json.dumps(dataclasses.asdict(config), indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pacslab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    samples = commands.add_parser("samples", help="write the sample DICOM series to a folder")
    samples.add_argument("path", help="destination folder")
    samples.add_argument("--ct-slices", type=int, default=120, help="slices of the CT phantom")
    samples.add_argument("--size", type=int, default=512, help="rows and columns of the CT phantom")
    samples.set_defaults(func=_samples)

    pacs = commands.add_parser("pacs", help="the embedded PACS")
    pacs_commands = pacs.add_subparsers(dest="pacs_command", required=True)
    serve = pacs_commands.add_parser("serve", help="run the embedded PACS until Ctrl-C")
    serve.add_argument("--seed", help="folder of DICOM files to load when the PACS is empty")
    serve.set_defaults(func=_pacs_serve)

    demo = commands.add_parser("demo", help="embedded PACS + Voila dashboard + JupyterLab")
    demo.add_argument("--workdir", default=".demo", help="folder for the demo's PACS, store and logs")
    demo.add_argument("--no-lab", action="store_true", help="do not start JupyterLab")
    demo.add_argument("--voila-port", type=int, default=8866, help="port of the Voila dashboard")
    demo.add_argument("--lab-port", type=int, default=8888, help="port of JupyterLab")
    demo.set_defaults(func=_demo)

    add_run_command(commands)

    config = commands.add_parser("config", help="print the effective configuration")
    config.set_defaults(func=_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"pacslab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
