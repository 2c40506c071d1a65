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
from sympy import oo  # noqa: F401
from sympy.codegen.cfunctions import log1p  # noqa: F401

from .primitives import (  # noqa: F401
    abs_pow,
    bce_term,
    clamp_min_ad,
    clamp_min_st,
    indicator,
    logaddexp,
    logsumexp3,
    minimum,
    norm_root,
    peak,
    ratio,
    sigmoid,
    softplus,
    two_forms,
    where,
    xlogy,
)

# Value domains the test-suite samples a tensor from (and the docs state).
Domain = Literal["real", "unit", "positive", "sign", "prob", "labels", "any"]


# Where an array lives relative to the loss (row losses only; elementwise losses broadcast):
# 'rows': shaped like input, class axis 1, (N, C, d1..dk), (C,) for one sample; indexed x[c];
# 'classes': one value per class, shape (C,), indexed w[c] or w[target];
# 'row': one value per row, shaped like the unreduced loss (pair losses: cosine_embedding's target).
Layout = Literal["elements", "rows", "classes", "row"]


@dataclass(frozen=True)
class Tensor:
    """A required array argument. ``differentiable`` as in torch's autograd."""

    name: str
    differentiable: bool
    domain: Domain = "real"
    doc: str = ""
    layout: Layout = "elements"
    # whether a bool array is accepted (read as 0/1); None: only where not differentiable.
    # torch's rule depends on the operators the loss applies to the tensor (no `-` on bool).
    accepts_bool: Optional[bool] = None


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
class Auxiliary:
    """A row-layout array the spec's prepare step computes from the arguments (not a parameter):
    e.g. multilabel_margin's target-membership mask."""

    name: str
    layout: Layout = "rows"
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
    # also compile the formula with this parameter at exactly 0, chosen at run time: terms it
    # multiplies vanish, so their cost and any 0 * inf = nan they could produce disappear too
    specialize_zero: bool = False
    # pair losses: also compile the formula with the parameter at each of these values (the
    # spec's element sees the number, e.g. oo, and may branch on it: a norm's order p); any other
    # value runs the general kernel, where the parameter is a runtime scalar
    specialize: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Bool:
    """A boolean that changes only the shape of the result (keepdim), never the formula."""

    name: str
    default: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Distance:
    """A distance function argument (kind='chain'): None (``default``, a compiled pair function of
    the same package) or a function compiled by losscc from a pair spec. In ``element`` it is a
    callable: distance(a, b) stands for the distance of the rows of tensors a and b."""

    name: str
    default: str = "pairwise_distance"
    doc: str = ""
    # a pair spec of the same directory that equals this loss with the default distance (its own
    # further options at the default distance's defaults): such calls run its one fused pass
    # where the chain makes five over memory (pair.check_fused holds the spec to the claim)
    fused: str = ""


@dataclass(frozen=True)
class Flag:
    """An option that changes the formula: each value gets its own kernel. Boolean by default;
    ``values`` lists the accepted values otherwise (e.g. p in (1, 2)), ``error`` the message
    for any other value."""

    name: str
    default: Any
    doc: str = ""
    values: tuple[Any, ...] = (False, True)
    error: str = ""
    # a boolean flag accepts only bools (torch: TypeError for log_target=1); False takes any truthy value
    strict: bool = True


@dataclass(frozen=True)
class Legacy:
    """One of torch's deprecated ``size_average`` / ``reduce`` arguments."""

    name: Literal["size_average", "reduce"]


@dataclass(frozen=True)
class Reduction:
    """The ``reduction`` argument."""

    default: str = "mean"
    name: str = "reduction"


@dataclass(frozen=True)
class Option:
    """A keyword-only losscc extension, not in torch's signature (e.g. ctc_loss's exact_gradient).
    It never changes the forward; the runtime passes it to the kernels as a boolean."""

    name: str
    default: bool = False
    doc: str = ""


Param = Union[Tensor, OptionalTensor, ClassTarget, Auxiliary, Int, Real, Flag, Legacy, Reduction, Option, Bool, Distance]


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


@dataclass(frozen=True)
class PerSample:
    """Recurrence losses: 'mean' averages over the samples each loss divided by a per-sample
    length, clamped to at least ``at_least`` (ctc: the target length, at least 1); no length:
    the plain average over the samples."""

    length: str = ""
    at_least: int = 1


Denominator = Union[Count, SumOf, BatchSize, TargetWeightSum, PerSample]


@dataclass(frozen=True)
class Loss:
    """One loss, as the compiler reads it."""

    name: str
    summary: str
    params: tuple[Param, ...]
    element: Callable[..., sympy.Expr] = lambda: sympy.Integer(0)  # recurrence losses: see ``recurrence``
    mean: Denominator = Count()
    # further reductions besides none/sum/mean, e.g. {'batchmean': BatchSize()}
    extra_reductions: tuple[tuple[str, Denominator], ...] = ()
    # plain-Python validation in torch's order; None uses the runtime's default
    prepare: Optional[Callable[[Any], None]] = None
    # elementwise: prepare's checks and changes depend only on a call's signature (array shapes
    # and dtypes, which optional arrays are given, the reals, flags and reduction), never on array
    # values, and it warns about nothing when all arrays share one shape. A repeated call of one
    # signature then reuses the first call's outcome and skips argument handling (runtime Plan;
    # tests/test_plans.py holds each such spec to the claim with arrays of nan, inf and extremes).
    # Off: prepare runs on every call. A spec without prepare is signature-only already.
    # row (class indices, with an ignore_index): the same, except that prepare may check that the
    # targets not ignored lie in [0, C) (class_target_check): a repeated plain call checks its
    # targets in one pass of its own (runtime RowPlan), and counts them for an unweighted 'mean'.
    signature_only_prepare: bool = False
    # output dtype: 'promote' (torch type promotion of the tensors), or the name of the tensor
    # whose dtype the result takes, as torch does for huber/soft_margin/hinge/bce_with_logits
    result_dtype: str = "promote"
    # whether integer arrays alone (no float among the tensors) are promoted to float32
    integers_promote: bool = False
    # elementwise: float32 data is computed in float32 arithmetic, at twice float64's vector width
    # (the loss is still summed in float64). Only for elements whose expressions cancel no worse in
    # float32 than torch's own formula: tests/test_precision.py holds each such loss to torch's
    # error against float64 on inputs made to cancel. Off: the arithmetic is float64 (exp and
    # log still run in the data's precision).
    float32_arithmetic: bool = False
    notes: tuple[str, ...] = ()
    # 'pair': reductions over the feature axis (the last) of two or three tensors, kernels of the row
    # shape; 'chain': an elementwise loss of distances computed by a Distance argument
    kind: Literal["elementwise", "row", "recurrence", "pair", "chain"] = "elementwise"
    # row losses: the Int parameter whose value marks a target row as ignored (contributes 0)
    ignore_index: str = ""
    # row losses: the class axis of input, 1 (torch's usual) or -1 (multilabel_soft_margin)
    class_axis: int = 1
    torch_name: str = ""
    # extra cases the tests must run: keyword arguments merged into the generated samples
    test_options: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    # kind='recurrence': the dynamic program (see Recurrence below)
    recurrence: Optional["Recurrence"] = None
    # kind='pair': the Int parameter naming the feature axis (cosine_similarity's dim); '' = the last
    feature_dim: str = ""
    # valid inputs of a given size for the benchmarks and `losscc warm`, where the arguments must
    # agree with each other (recurrences): example(shape, dtype, rng) -> (positional, keywords)
    example: Optional[Callable[[tuple[int, ...], Any, Any], tuple[list[Any], dict[str, Any]]]] = None


# The class axis of row losses: specs sum over CLASS from 0 to CLASSES - 1.
CLASS = sympy.Symbol("c", integer=True)
OTHER_CLASS = sympy.Symbol("c_other", integer=True)  # for a second, nested sum over the classes
CLASSES = sympy.Symbol("C", integer=True, positive=True)


class _AxisReduction(sympy.Expr):  # type: ignore[misc]
    """A reduction of ``body`` over the bound ``index`` (args: body, index)."""

    is_commutative = True

    @property
    def body(self) -> sympy.Expr:
        return self.args[0]

    @property
    def index(self) -> sympy.Symbol:
        return self.args[1]

    @property
    def free_symbols(self) -> set[sympy.Basic]:
        return self.body.free_symbols - {self.index}  # type: ignore[no-any-return]


class ClassSum(_AxisReduction):
    """sum over index = 0 .. C-1 of body, with the index bound.

    Our own node rather than sympy.Sum: Sum folds Piecewise bodies into Piecewise-of-Sums even
    when the conditions depend on the index, which is wrong for hinge losses.
    """

    def __new__(cls, body: Any, index: sympy.Symbol) -> "ClassSum":
        return sympy.Expr.__new__(cls, sympy.sympify(body), index)  # type: ignore[no-any-return]

    def _eval_derivative(self, s: sympy.Basic) -> sympy.Expr:
        return ClassSum(sympy.diff(self.body, s), self.index)

    def _latex(self, printer: Any, exp: Any = None) -> str:
        i = printer._print(self.index)
        text = rf"\sum_{{{i}=0}}^{{C-1}} \left({printer._print(self.body)}\right)"
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


def class_sum(body: sympy.Expr, index: sympy.Symbol = CLASS) -> sympy.Expr:
    """The sum of ``body`` over the classes of one row (index CLASS, or OTHER_CLASS when nested)."""
    return ClassSum(body, index)


def log_softmax_denominator(logits: sympy.Expr) -> sympy.Expr:
    """log(sum_c exp(logits)): written plainly; the compiler shifts it by the row maximum."""
    return log(class_sum(exp(logits)))


def is_class_index(target: object) -> bool:
    """In a row loss's element: True when the ClassTarget is a class index (not probabilities)."""
    return isinstance(target, sympy.Symbol)


def relu_strict(z: sympy.Expr) -> sympy.Expr:
    """max(z, 0) as torch's hand-written margin kernels: zero (value and gradient) unless z > 0,
    so z == 0 and a nan z contribute nothing."""
    return Piecewise((z, z > 0), (0, True))


def computed_first(z: sympy.Expr) -> sympy.Expr:
    """z, evaluated as one unit before the expression around it uses it. SymPy orders the terms
    of a sum as it likes; torch's kernels add in a fixed order, and at an exact tie of a strict
    hinge (1 + 1e-30 - 1 is 0 only in that order) the order decides the gradient."""
    return two_forms(z, z)


def stop_gradient(z: sympy.Expr) -> sympy.Expr:
    """z, with a zero derivative (torch's detach): for the differentiated form of ``two_forms``,
    whose terms may each stand for one argument's gradient. Mixed second derivatives through it
    are zero; the Hessian diagonal stays exact when each term is differentiated only in the
    argument it is written for."""
    return two_forms(z, 0)


def clamp_min(z: sympy.Expr, lo: sympy.Expr | int = 0) -> sympy.Expr:
    """torch's autograd ``clamp_min``: at z == lo the gradient passes (its mask is z >= lo); a nan
    argument or bound gives nan with a zero gradient, as torch."""
    return clamp_min_ad(z, lo)


# ---------------------------------------------------------------------------------------------
# recurrences: dynamic programs over steps (time) and states (kind='recurrence')
# ---------------------------------------------------------------------------------------------

# A recurrence fills a table v[t, s] of one sample, t = 0 .. steps-1, s = 0 .. states-1 (both
# per sample, set by the spec's prepare step). Specs index their arrays with these symbols.
STEP = sympy.Symbol("t", integer=True)
STATE = sympy.Symbol("s", integer=True)
FEATURE = sympy.Symbol("d", integer=True)  # a feature axis a cost sums over: class_sum(..., FEATURE)


@dataclass(frozen=True)
class Step:
    """One predecessor of v[t, s]: v[t + dt, s + ds], with dt in (-1, 0), ds <= 0, not both 0.
    ``guard``: a SymPy condition of STEP and STATE, or a function of the recurrence's arrays
    returning one; where false, the term is absent. A predecessor before the first state
    (s + ds < 0) is absent too."""

    dt: int
    ds: int
    guard: Any = sympy.true


@dataclass(frozen=True)
class Recurrence:
    """v[t, s] = combine(v at each predecessor) + emission(t, s); the loss is readout(end) of the
    last row, end(k) = v[steps-1, states-1-k]. Only this forward program is written: the compiler
    differentiates ``combine``, ``emission`` and ``readout`` (sympy.diff) and generates the reverse
    sweep (the adjoint recurrence) from those local partials.

    - combine(*predecessors, **reals): e.g. logsumexp3(a, b, c); Reals by parameter name.
    - emission(**arrays): the spec's arrays as IndexedBase, at (STEP, STATE), e.g. lp[t, l[s]].
    - absent: the value of an absent predecessor, neutral for combine (-oo for log-sum-exp).
    - initial(s): the row before t = 0, also at the padding states s < 0.
    - arrays: {name: (batch axis, layout)}; layout 'steps' (indexed [t, ...]), 'states' (one value
      per state, prepared by the spec with the table's padding on both sides) or 'other'.
    - zero_infinity: the Flag that turns an infinite loss and its gradient into zeros.
    - torch_log_softmax: torch's gradient convention for this array (indexed [t, class]): the
      gradient as if log_softmax had produced it, i.e. that of loss(log_softmax(z)) at z = the
      array, assuming its rows are normalised (ctc); ``exact_option`` returns the exact one.
    """

    predecessors: tuple[Step, ...]
    combine: Callable[..., sympy.Expr]
    emission: Callable[..., sympy.Expr]
    absent: Any
    initial: Callable[[sympy.Symbol], sympy.Expr]
    readout: Callable[..., sympy.Expr]
    arrays: tuple[tuple[str, int, str], ...]  # (name, batch axis, layout)
    zero_infinity: str = ""
    torch_log_softmax: str = ""
    exact_option: str = ""


# ---------------------------------------------------------------------------------------------
# feature axes: reductions over the features of a row (kind='pair'); indexed x[FEATURE]
# ---------------------------------------------------------------------------------------------

PEAK_INDEX = sympy.Symbol("d_peak", integer=True)  # the sums a maximum's derivative adds


class ClassMax(_AxisReduction):
    """max over index = 0 .. C-1 (or the features) of body; nan if any term is nan, as torch's
    amax. Its derivative is torch's convention for a maximum (amax, the inf-norm): the gradient
    is split equally among the terms equal to the maximum, a nan term counting as one of them.

    The bound index is renamed to one fixed symbol, so that the same maximum is one node wherever
    differentiation has renamed the indices around it, and is computed once."""

    _BOUND = sympy.Symbol("j_max", integer=True)

    def __new__(cls, body: Any, index: sympy.Symbol) -> "ClassMax":
        body = sympy.sympify(body).xreplace({index: cls._BOUND})
        return sympy.Expr.__new__(cls, body, cls._BOUND)  # type: ignore[no-any-return]

    def _eval_derivative(self, s: sympy.Basic) -> sympy.Expr:
        term = self.body.xreplace({self.index: PEAK_INDEX})
        share = peak(term, self)
        return ClassSum(share * sympy.diff(term, s), PEAK_INDEX) / ClassSum(share, PEAK_INDEX)

    def _latex(self, printer: Any, exp: Any = None) -> str:
        text = rf"\max_{{{printer._print(self.index)}}} \left({printer._print(self.body)}\right)"
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


def feature_sum(body: sympy.Expr) -> sympy.Expr:
    """The sum of ``body`` over the features d = 0 .. D-1 of one row."""
    return ClassSum(body, FEATURE)


def feature_max(body: sympy.Expr) -> sympy.Expr:
    """The maximum of ``body`` over the features of one row (torch's amax conventions)."""
    return ClassMax(body, FEATURE)


def p_norm(v: sympy.Expr, p: Any) -> sympy.Expr:
    """torch's linalg.vector_norm of order p of v (written at FEATURE) over the feature axis, with
    its subgradients: 0 where the norm is 0, split among the maxima for p = +-inf, none for p = 0
    (a count). ``p`` is a number in a specialized kernel, else a runtime Symbol (any p != 0, inf)."""
    if p == oo:
        return feature_max(Abs(v))
    if p == -oo:
        return -feature_max(-Abs(v))
    if p == 0:
        return feature_sum(indicator(Ne(v, 0)))
    if p == 1:
        return feature_sum(Abs(v))
    if p == 2:
        return norm_root(feature_sum(v * v), 2)
    return norm_root(feature_sum(abs_pow(v, p)), p)


def cosine(x1: sympy.Expr, x2: sympy.Expr, eps: Any) -> sympy.Expr:
    """torch's cosine_similarity of two rows (x1, x2 written at FEATURE; aten Distance.cpp): each
    norm clamped at eps under no_grad (straight through), each tensor divided by its norm before
    the product (``ratio`` keeps the division per feature, as torch: the result stays in [-1, 1])."""
    n1 = clamp_min_st(p_norm(x1, 2), eps)
    n2 = clamp_min_st(p_norm(x2, 2), eps)
    return feature_sum(ratio(x1, n1) * ratio(x2, n2))
