"""The ``losscc`` command: build, build --check, list."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .driver import BuildPaths, differences, render_all, write
from .lang import Flag, Legacy, OptionalTensor, Real, Reduction, Tensor
from .load import load_specs
from .printer import SpecError


def _paths(args: argparse.Namespace) -> BuildPaths:
    return BuildPaths(Path(args.specs), Path(args.out), Path(args.docs))


def build(args: argparse.Namespace) -> int:
    paths = _paths(args)
    started = time.perf_counter()
    files = render_all(paths)  # renders everything before touching the disk: a bad spec writes nothing
    if args.check:
        changed = differences(files, paths)
        for path in changed:
            print(f"differs: {path}")
        if changed:
            print(f"{len(changed)} file(s) differ from the specs: run `losscc build`", file=sys.stderr)
            return 1
        print(f"up to date: {len(files)} files from {paths.specs} ({time.perf_counter() - started:.1f} s)")
        return 0
    written = write(files, paths)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} of {len(files)} files changed ({time.perf_counter() - started:.1f} s)")
    return 0


def _describe(param: object) -> str:
    if isinstance(param, Tensor):
        return param.name + ("" if param.differentiable else " (no grad)")
    if isinstance(param, (OptionalTensor, Legacy)):
        return f"{param.name}=None"
    if isinstance(param, (Real, Flag, Reduction)):
        return f"{param.name}={param.default!r}"
    return repr(param)


def list_losses(args: argparse.Namespace) -> int:
    for loaded in load_specs(Path(args.specs)):
        params = ", ".join(_describe(p) for p in loaded.spec.params)
        print(f"{loaded.name}({params})")
        print(f"    {loaded.spec.summary}")
        print(f"    spec: {loaded.path}  docs: {Path(args.docs) / 'losses' / (loaded.name + '.tex')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="losscc", description="Compile loss specs into Numba kernels and LaTeX docs.")
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="regenerate the package and the docs from the specs")
    build_parser.add_argument("--check", action="store_true", help="render in memory; exit 1 listing files that differ")
    list_parser = commands.add_parser("list", help="the losses, their parameters and their documentation")
    for sub in (build_parser, list_parser):
        sub.add_argument("--specs", default="specs", help="directory of spec files (default: specs)")
        sub.add_argument("--out", default="generated", help="output package directory (default: generated)")
        sub.add_argument("--docs", default="docs", help="documentation directory (default: docs)")
    args = parser.parse_args(argv)
    try:
        return build(args) if args.command == "build" else list_losses(args)
    except SpecError as error:
        print(f"losscc: error: {error}", file=sys.stderr)
        return 2
