"""Example calls built from a spec, and warming Numba's on-disk cache with them.

Every kernel is jitted with ``cache=True``, so a kernel compiled once is only loaded by later
processes. ``losscc warm`` (and ``losscc build --warm``) calls each loss of a generated package
on tiny valid inputs, once per kernel variant (flag values, optional tensors given or not, class
targets as probabilities, reals compiled also at zero) and per float dtype and row layout, which
is every signature the runtime compiles. The benchmarks build their large inputs with the same
``example_call``.
"""
from __future__ import annotations

import importlib
import itertools
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .lang import ClassTarget, Flag, Loss, OptionalTensor, Real, Tensor
from .load import load_spec
from .printer import SpecError

FLOAT_DTYPES: tuple[type[np.floating[Any]], ...] = (np.float32, np.float64)
# multi-label targets list a few labels per row: the cost of torch's kernel and ours grows with
# the labels per row, and real multi-label data has few
LABELS_PER_ROW = 4
KINDS_WITH_EXAMPLES = ("elementwise", "row", "pair", "chain")
# pair and chain losses: rows of features, (N, D) or (D)
FEATURE_KINDS = ("pair", "chain")


def sample(domain: str, shape: tuple[int, ...], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """Random values valid for a tensor domain (compiler.lang.Domain)."""
    if domain == "labels":  # class labels of a row, the first -1 ends the list
        labels = rng.integers(0, shape[-1], size=shape)
        labels[..., LABELS_PER_ROW:] = -1
        return labels.astype(np.int64)
    ranges = {"unit": (0.05, 0.95), "positive": (0.1, 2.0), "prob": (0.0, 1.0)}
    if domain == "sign":
        values = rng.choice([-1.0, 1.0], size=shape)
    elif domain in ranges:
        values = rng.uniform(*ranges[domain], size=shape)
    else:  # 'real', 'any'
        values = rng.standard_normal(shape)
    return np.asarray(values, dtype=dtype)


@dataclass(frozen=True)
class Variant:
    """What selects a kernel variant: flag and real values, optional tensors given, and whether
    class targets are given as probabilities. The default: torch's defaults, nothing optional."""

    keywords: tuple[tuple[str, Any], ...] = ()
    given: frozenset[str] = frozenset()
    probabilities: bool = False


def variants(spec: Loss) -> list[Variant]:
    """Every combination that selects a different kernel (one value per axis, all axes crossed)."""
    axes: list[list[Variant]] = []
    for p in spec.params:
        if isinstance(p, Flag):
            axes.append([Variant(keywords=((p.name, value),)) for value in p.values])
        elif isinstance(p, Real) and p.specialize_zero:
            other = 0.25 if p.default == 0 else 0.0
            axes.append([Variant(keywords=((p.name, p.default),)), Variant(keywords=((p.name, other),))])
        elif isinstance(p, Real) and p.specialize:  # each special value, and one the general kernel runs
            values = [float(v) for v in p.specialize] + [1.5]
            axes.append([Variant(keywords=((p.name, v),)) for v in values])
        elif isinstance(p, OptionalTensor):
            axes.append([Variant(), Variant(given=frozenset({p.name}))])
        elif isinstance(p, ClassTarget) and p.probabilities_switch:
            axes.append([Variant(), Variant(probabilities=True)])
    return [
        Variant(
            keywords=tuple(kw for v in combo for kw in v.keywords),
            given=frozenset().union(*(v.given for v in combo)),
            probabilities=any(v.probabilities for v in combo),
        )
        for combo in itertools.product(*axes)
    ]


def class_axis(spec: Loss, input_shape: tuple[int, ...]) -> int:
    return len(input_shape) - 1 if spec.class_axis == -1 or len(input_shape) == 1 else 1


def example_call(spec: Loss, input_shape: tuple[int, ...], dtype: Any, rng: np.random.Generator,
                 variant: Variant = Variant()) -> tuple[list[Any], dict[str, Any]]:
    """(positional, keywords) of a valid call: the required arrays in signature order, shaped by
    ``input_shape`` ((n,) elementwise; (N, C) or (N, C, d...) for row losses; (N, D) or (D) for
    pair and chain losses, features last), then the variant."""
    if spec.example is not None:  # arguments that must agree with each other: the spec makes them
        arrays, given = spec.example(input_shape, dtype, rng)
        return arrays, dict(given, **dict(variant.keywords))
    if spec.kind in FEATURE_KINDS:
        return _feature_call(spec, input_shape, dtype, rng, variant)
    axis = class_axis(spec, input_shape)
    classes = input_shape[axis]
    target_shape = input_shape[:axis] + input_shape[axis + 1:]
    positional: list[Any] = []
    keywords: dict[str, Any] = dict(variant.keywords)
    for p in spec.params:
        if isinstance(p, Tensor):
            positional.append(sample(p.domain, (classes,) if p.layout == "classes" else input_shape, dtype, rng))
        elif isinstance(p, ClassTarget):
            positional.append(sample("prob", input_shape, dtype, rng) if variant.probabilities
                              else rng.integers(0, classes, size=target_shape).astype(np.int64))
        elif isinstance(p, OptionalTensor) and p.name in variant.given:
            keywords[p.name] = sample(p.domain, (classes,) if p.layout == "classes" else input_shape, dtype, rng)
    return positional, keywords


def _feature_call(spec: Loss, input_shape: tuple[int, ...], dtype: Any, rng: np.random.Generator,
                  variant: Variant) -> tuple[list[Any], dict[str, Any]]:
    """Pair and chain losses: feature tensors shaped ``input_shape``, one value per row for a
    tensor of layout 'row' (cosine_embedding_loss's target)."""
    positional: list[Any] = []
    for p in spec.params:
        if isinstance(p, Tensor):
            positional.append(sample(p.domain, input_shape[:-1] if p.layout == "row" else input_shape, dtype, rng))
    return positional, dict(variant.keywords)


def has_examples(spec: Loss) -> bool:
    return spec.kind in KINDS_WITH_EXAMPLES or spec.example is not None


def tiny_shapes(spec: Loss) -> tuple[tuple[int, ...], ...]:
    """Input shapes reaching every row layout: contiguous rows (N, C) and strided rows (N, C, D)."""
    if spec.kind == "row":
        return ((2, 3), (2, 3, 2)) if spec.class_axis == 1 else ((2, 3),)
    if spec.kind in FEATURE_KINDS:
        return ((2, 3),)
    if spec.kind == "recurrence":  # ctc (T, N, C, S), soft_dtw (N, T, U, D)
        return ((6, 2, 4, 2),)
    return ((3,),)


def import_package(package_dir: Path) -> ModuleType:
    """The generated package at ``package_dir``, imported by its directory name."""
    package = package_dir.resolve()
    if str(package.parent) not in sys.path:
        sys.path.insert(0, str(package.parent))
    return importlib.import_module(package.name)


@dataclass
class WarmReport:
    seconds: dict[str, float] = field(default_factory=dict)  # per loss
    signatures: dict[str, int] = field(default_factory=dict)  # compiled (or loaded) per loss
    skipped: dict[str, str] = field(default_factory=dict)  # loss: why it was not warmed
    # loss.kernel compiled for fewer than both dtypes: no valid call reaches it (e.g. strided-row
    # kernels of a loss that takes 1-D or 2-D input only), or the example calls miss a variant
    not_compiled: list[str] = field(default_factory=list)


def warm_loss(package: ModuleType, spec: Loss, rng: np.random.Generator) -> None:
    forward = getattr(package, spec.name)
    backward = getattr(package, spec.name + "_backward")
    value_and_grad = getattr(package, spec.name + "_value_and_grad")
    for variant, dtype, shape in itertools.product(variants(spec), FLOAT_DTYPES, tiny_shapes(spec)):
        positional, keywords = example_call(spec, shape, dtype, rng, variant)
        try:
            value = forward(*positional, **keywords)
        except ValueError:  # a combination this loss rejects (e.g. K-dim input): no kernel for it
            continue
        backward(np.ones_like(value), *positional, **keywords)
        value_and_grad(*positional, **keywords)
        value_and_grad(*positional, **keywords)  # a repeated call runs its plan: a row plan's target check compiles


def warm(package_dir: Path, specs_dir: Path) -> WarmReport:
    """Compile (or load) every kernel of every loss in the package; report what was missed."""
    from numba.core.registry import CPUDispatcher

    package = import_package(package_dir)
    report = WarmReport()
    rng = np.random.default_rng(0)
    for name in package.LOSSES:
        try:
            spec = load_spec(specs_dir / f"{name}.py").spec
        except SpecError as error:
            report.skipped[name] = str(error)
            continue
        if not has_examples(spec):
            report.skipped[name] = f"no example inputs for kind {spec.kind!r} (see Loss.example)"
            continue
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation advisories, repeated per call
            warm_loss(package, spec, rng)
        report.seconds[name] = time.perf_counter() - started
        module = importlib.import_module(f"{package.__name__}.{name}")
        kernels = [(attr, k) for attr, k in vars(module).items() if isinstance(k, CPUDispatcher)]
        report.signatures[name] = sum(len(k.signatures) for _, k in kernels)
        report.not_compiled += [f"{name}.{attr}" for attr, k in kernels if len(k.signatures) < len(FLOAT_DTYPES)]
    return report
