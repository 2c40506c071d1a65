"""The spec language: what a file under ``specs/`` may use.

A spec module defines ``SPEC = Loss(...)``: the torch signature as a list of parameters, a
function ``element`` that returns the per-element loss as a SymPy expression, how 'mean'
normalises, and optionally a ``prepare`` function (plain Python, no mathematics) that
validates arguments in torch's order. Gradients are never written here: the compiler derives
them from ``element``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Union

import sympy
from sympy import Abs, Eq, Max, Min, Ne, Piecewise, exp, log, pi, sign, sqrt  # noqa: F401
from sympy.codegen.cfunctions import log1p  # noqa: F401

from .primitives import (  # noqa: F401
    bce_term,
    clamp_min_st,
    indicator,
    ratio,
    sigmoid,
    softplus,
    where,
    xlogy,
)

# Value domains the test-suite samples a tensor from (and the docs state).
Domain = Literal["real", "unit", "positive", "sign", "prob", "any"]


# Where an array lives relative to the loss (row losses only; elementwise losses broadcast):
# 'rows': shaped like input, class axis 1, (N, C, d1..dk), (C,) for one sample; indexed x[c];
# 'classes': one value per class, shape (C,), indexed w[c] or w[target].
Layout = Literal["elements", "rows", "classes"]


@dataclass(frozen=True)
class Tensor:
    """A required array argument. ``differentiable`` as in torch's autograd."""

    name: str
    differentiable: bool
    domain: Domain = "real"
    doc: str = ""
    layout: Layout = "elements"


@dataclass(frozen=True)
class OptionalTensor:
    """An array argument defaulting to None; absent, the loss sees ``neutral`` instead."""

    name: str
    neutral: int = 1
    doc: str = ""
    domain: Domain = "positive"
    layout: Layout = "elements"


@dataclass(frozen=True)
class ClassTarget:
    """Class indices, one per row ((N, d1..dk), () for one sample): an integer symbol in the spec.

    With ``probabilities_switch``, a floating target shaped like input is read as class
    probabilities instead (cross_entropy): the spec then sees a 'rows' tensor, differentiable.
    """

    name: str
    probabilities_switch: str = ""
    doc: str = ""


@dataclass(frozen=True)
class Int:
    """An integer runtime parameter that steers the kernel, never the formula (ignore_index)."""

    name: str
    default: int
    doc: str = ""


@dataclass(frozen=True)
class Real:
    """A scalar runtime parameter (delta, margin, eps): one compiled kernel serves every value."""

    name: str
    default: float
    doc: str = ""


@dataclass(frozen=True)
class Flag:
    """A boolean option that changes the formula: each value gets its own kernel."""

    name: str
    default: bool
    doc: str = ""


@dataclass(frozen=True)
class Legacy:
    """One of torch's deprecated ``size_average`` / ``reduce`` arguments."""

    name: Literal["size_average", "reduce"]


@dataclass(frozen=True)
class Reduction:
    """The ``reduction`` argument."""

    default: str = "mean"
    name: str = "reduction"


Param = Union[Tensor, OptionalTensor, ClassTarget, Int, Real, Flag, Legacy, Reduction]


@dataclass(frozen=True)
class Count:
    """'mean' divides by the number of elements of the unreduced loss."""


@dataclass(frozen=True)
class SumOf:
    """'mean' divides by the sum of an optional tensor, when it is given (else by the count)."""

    tensor: str


@dataclass(frozen=True)
class TargetWeightSum:
    """'mean' of class-index losses: the sum of weight[target] over rows not ignored (their count
    without a weight); with probability targets, the number of rows."""

    weight: str = "weight"


@dataclass(frozen=True)
class BatchSize:
    """Divide by ``input.shape[0]`` (1 for a 0-d input), as kl_div's 'batchmean'."""

    tensor: str = "input"


Denominator = Union[Count, SumOf, BatchSize, TargetWeightSum]


@dataclass(frozen=True)
class Loss:
    """One loss, as the compiler reads it."""

    name: str
    summary: str
    params: tuple[Param, ...]
    element: Callable[..., sympy.Expr]
    mean: Denominator = Count()
    # further reductions besides none/sum/mean, e.g. {'batchmean': BatchSize()}
    extra_reductions: tuple[tuple[str, Denominator], ...] = ()
    # plain-Python validation in torch's order; None uses the runtime's default
    prepare: Optional[Callable[[Any], None]] = None
    # output dtype: 'promote' (torch type promotion of the tensors), or the name of the tensor
    # whose dtype the result takes, as torch does for huber/soft_margin/hinge/bce_with_logits
    result_dtype: str = "promote"
    # whether integer arrays alone (no float among the tensors) are promoted to float32
    integers_promote: bool = False
    notes: tuple[str, ...] = ()
    kind: Literal["elementwise", "row"] = "elementwise"
    # row losses: the Int parameter whose value marks a target row as ignored (contributes 0)
    ignore_index: str = ""
    torch_name: str = ""
    # extra cases the tests must run: keyword arguments merged into the generated samples
    test_options: tuple[dict[str, Any], ...] = field(default_factory=tuple)


# The class axis of row losses: specs sum over CLASS from 0 to CLASSES - 1.
CLASS = sympy.Symbol("c", integer=True)
CLASSES = sympy.Symbol("C", integer=True, positive=True)


def class_sum(body: sympy.Expr) -> sympy.Expr:
    """The sum of ``body`` over the classes of one row (use CLASS as the index)."""
    return sympy.Sum(body, (CLASS, 0, CLASSES - 1))


def log_softmax_denominator(logits: sympy.Expr) -> sympy.Expr:
    """log(sum_c exp(logits)): written plainly; the compiler shifts it by the row maximum."""
    return log(class_sum(exp(logits)))


def is_class_index(target: object) -> bool:
    """In a row loss's element: True when the ClassTarget is a class index (not probabilities)."""
    return isinstance(target, sympy.Symbol)


def relu_strict(z: sympy.Expr) -> sympy.Expr:
    """max(z, 0) with a zero gradient at z == 0, as torch's hand-written margin kernels."""
    return Piecewise((0, z <= 0), (z, True))


def clamp_min(z: sympy.Expr, lo: sympy.Expr | int = 0) -> sympy.Expr:
    """torch's autograd ``clamp_min``: nan propagates, and at z == lo the gradient passes."""
    return Piecewise((lo, z < lo), (z, True))
