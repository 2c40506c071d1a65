"""The ``losscc`` command: build, build --check, build --warm, warm, list, demo."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .driver import BuildPaths, differences, render_all, write
from .lang import Auxiliary, Bool, Distance, Flag, Int, Legacy, Option, OptionalTensor, Real, Reduction, Tensor
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
    return warm(args) if args.warm else 0


def warm(args: argparse.Namespace) -> int:
    """Compile every kernel into Numba's cache, so a fresh process loads instead of compiling."""
    from .warm import warm as warm_package

    started = time.perf_counter()
    report = warm_package(Path(args.out), Path(args.specs))
    for name, seconds in report.seconds.items():
        print(f"warm {name}: {report.signatures[name]} kernel signatures ({seconds:.1f} s)")
    for name, reason in report.skipped.items():
        print(f"not warmed {name}: {reason}")
    if report.not_compiled:
        print(f"kernels no valid call reached (not cached): {', '.join(report.not_compiled)}")
    print(f"warmed {len(report.seconds)} losses, {sum(report.signatures.values())} kernel signatures "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


def _describe(param: object) -> str:
    if isinstance(param, Tensor):
        return param.name + ("" if param.differentiable else " (no grad)")
    if isinstance(param, (OptionalTensor, Legacy, Distance)):  # a Distance's None: its compiled default
        return f"{param.name}=None"
    if isinstance(param, (Real, Flag, Reduction, Int, Bool, Option)):
        return f"{param.name}={param.default!r}"
    return str(getattr(param, "name", param))


def list_losses(args: argparse.Namespace) -> int:
    for loaded in load_specs(Path(args.specs)):
        # an Auxiliary is computed by the spec's prepare step, not passed by the caller
        params = ", ".join(_describe(p) for p in loaded.spec.params if not isinstance(p, Auxiliary))
        print(f"{loaded.name}({params})")
        print(f"    {loaded.spec.summary}")
        print(f"    spec: {loaded.path}  docs: {Path(args.docs) / 'losses' / (loaded.name + '.tex')}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """A short tour of the built package: forward, backward and fused calls on random data."""
    import numpy as np

    from .warm import import_package

    generated = import_package(Path(args.out))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y = rng.standard_normal((4, 5)).astype(np.float32)
    started = time.perf_counter()
    loss = generated.huber_loss(x, y, delta=0.5)
    print(f"huber_loss(x, y, delta=0.5)            = {float(loss):.6f}   (first call compiles or loads the cache: {time.perf_counter() - started:.2f} s)")
    print(f"numpy reference                        = {float(np.mean(np.where(np.abs(x - y) < 0.5, 0.5 * (x - y) ** 2, 0.5 * (np.abs(x - y) - 0.25)))):.6f}")
    grad_input, grad_target = generated.huber_loss_backward(np.float32(1.0), x, y, delta=0.5)
    print(f"huber_loss_backward: d/dinput[0, :3]   = {grad_input[0, :3]}")
    value, (gx, gy) = generated.binary_cross_entropy_with_logits_value_and_grad(x, (y > 0).astype(np.float32))
    print(f"bce_with_logits value_and_grad         = {float(value):.6f}, |grad input| = {float(np.abs(gx).sum()):.6f}")
    print(f"compiled losses: {', '.join(generated.LOSSES)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="losscc", description="Compile loss specs into Numba kernels and LaTeX docs.")
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="regenerate the package and the docs from the specs")
    build_parser.add_argument("--check", action="store_true", help="render in memory; exit 1 listing files that differ")
    build_parser.add_argument("--warm", action="store_true", help="then compile every kernel into Numba's cache")
    list_parser = commands.add_parser("list", help="the losses, their parameters and their documentation")
    demo_parser = commands.add_parser("demo", help="call a few compiled losses on random data")
    warm_parser = commands.add_parser("warm", help="compile every kernel of the built package into Numba's cache")
    for sub in (build_parser, list_parser, demo_parser, warm_parser):
        sub.add_argument("--specs", default="specs", help="directory of spec files (default: specs)")
        sub.add_argument("--out", default="generated", help="output package directory (default: generated)")
        sub.add_argument("--docs", default="docs", help="documentation directory (default: docs)")
    args = parser.parse_args(argv)
    try:
        return {"build": build, "list": list_losses, "demo": demo, "warm": warm}[args.command](args)
    except SpecError as error:
        print(f"losscc: error: {error}", file=sys.stderr)
        return 2
