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


@dataclass(frozen=True)
class Tensor:
    """A required array argument. ``differentiable`` as in torch's autograd."""

    name: str
    differentiable: bool
    domain: Domain = "real"
    doc: str = ""


@dataclass(frozen=True)
class OptionalTensor:
    """An array argument defaulting to None; absent, the loss sees ``neutral`` instead."""

    name: str
    neutral: int = 1
    doc: str = ""
    domain: Domain = "positive"


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


Param = Union[Tensor, OptionalTensor, Real, Flag, Legacy, Reduction]


@dataclass(frozen=True)
class Count:
    """'mean' divides by the number of elements of the unreduced loss."""


@dataclass(frozen=True)
class SumOf:
    """'mean' divides by the sum of an optional tensor, when it is given (else by the count)."""

    tensor: str


@dataclass(frozen=True)
class BatchSize:
    """Divide by ``input.shape[0]`` (1 for a 0-d input), as kl_div's 'batchmean'."""

    tensor: str = "input"


Denominator = Union[Count, SumOf, BatchSize]


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
    kind: Literal["elementwise"] = "elementwise"
    torch_name: str = ""
    # extra cases the tests must run: keyword arguments merged into the generated samples
    test_options: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def clamp_min(z: sympy.Expr, lo: sympy.Expr | int = 0) -> sympy.Expr:
    """torch's autograd ``clamp_min``: nan propagates, and at z == lo the gradient passes."""
    return Piecewise((lo, z < lo), (z, True))
