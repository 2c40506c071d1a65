"""Stage 2, derive: the per-element loss of every variant and its derivatives, by sympy.diff.

A variant fixes the value of every Flag and whether each OptionalTensor is given. Reductions
are derived too: a reduced loss is f(S, D) of the sum S of the element losses and a
denominator D; the gradient of element i is df/dS times the element's own derivative.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import sympy

from .lang import (
    Auxiliary,
    BatchSize,
    ClassTarget,
    Count,
    Denominator,
    Flag,
    Loss,
    OptionalTensor,
    Real,
    SumOf,
    TargetWeightSum,
    Tensor,
)
from .optimize import resolve_sums
from .printer import SpecError

SUM_SYMBOL = sympy.Symbol("S", real=True)
# The class whose gradient a row loss's derivative gives: d loss / d input[GRAD_CLASS].
GRAD_CLASS = sympy.Symbol("k", integer=True)
DENOMINATOR_SYMBOL = sympy.Symbol("D", positive=True)


@dataclass(frozen=True)
class Variant:
    key: str  # e.g. 'full_log_input_weight': used in kernel names, stable and sorted
    flags: tuple[tuple[str, bool], ...]
    present: tuple[tuple[str, bool], ...]  # optional tensors given or not
    arrays: tuple[str, ...]  # tensors the kernel reads, in signature order
    reals: tuple[str, ...]
    symbols: dict[str, sympy.Basic]  # Symbol, or IndexedBase for row losses' tensors
    loss: sympy.Expr
    gradients: tuple[tuple[str, sympy.Expr], ...]  # (tensor name, d loss / d tensor)
    probabilities: bool = False  # row losses: the class target is read as probabilities

    def hessian_diagonal(self) -> tuple[tuple[str, sympy.Expr], ...]:
        """Second derivatives d^2 loss / d tensor^2, for second-order (boosting) objectives."""
        return tuple((name, sympy.diff(grad, self.symbols[name])) for name, grad in self.gradients)


class Neutral:
    """An absent optional tensor of a row loss: every element is the neutral value."""

    def __init__(self, value: int) -> None:
        self.value = sympy.Integer(value)

    def __getitem__(self, index: object) -> sympy.Integer:
        return self.value


def row_symbol(name: str, layout: str) -> sympy.Basic:
    return sympy.IndexedBase(name, real=True) if layout in ("rows", "classes") else sympy.Symbol(name, real=True)


def row_variants(path: Path, spec: Loss) -> list[Variant]:
    """Variants of a row loss: flags x optional tensors x (index or probability targets)."""
    flags = [p for p in spec.params if isinstance(p, Flag)]
    optional = presence_dimensions(spec)
    targets = [p for p in spec.params if isinstance(p, ClassTarget)]
    switches = [t.probabilities_switch for t in targets if t.probabilities_switch]
    specials = [p for p in spec.params if isinstance(p, Real) and p.specialize]
    result = []
    for flag_values in itertools.product(*[f.values for f in flags]):
        for present_values in itertools.product((False, True), repeat=len(optional)):
            for switch_values in itertools.product((False, True), repeat=len(switches)):
                for special_values in itertools.product(*[special_labels(p) for p in specials]):
                    flag_pairs = tuple((f.name, v) for f, v in zip(flags, flag_values))
                    flag_pairs += tuple((p.name, v) for p, v in zip(specials, special_values))
                    present_pairs = tuple((o.name, v) for o, v in zip(optional, present_values))
                    switch_pairs = tuple(zip(switches, switch_values))
                    result.append(_row_variant(path, spec, flag_pairs, present_pairs, switch_pairs))
    return result


def special_label(value: object) -> str:
    """A Real's specialized value as a kernel-name part (2, 1, inf, neginf, 0)."""
    number = float(value)  # type: ignore[arg-type]
    text = "inf" if number == float("inf") else "neginf" if number == float("-inf") else f"{number:g}"
    return text.replace("-", "neg").replace(".", "_")


def special_labels(p: Real) -> tuple[str, ...]:
    """The kernels of a specialized Real: one per value, and 'any' (the value a runtime scalar)."""
    return tuple(special_label(v) for v in p.specialize) + ("any",)


def special_value(p: Real, label: str) -> sympy.Expr | None:
    """The number a specialized kernel fixes the Real to (oo for inf), None in the general one."""
    for value in p.specialize:
        if special_label(value) == label:
            return sympy.sympify(value)
    return None


def _row_variant(
    path: Path,
    spec: Loss,
    flags: tuple[tuple[str, bool], ...],
    present: tuple[tuple[str, bool], ...],
    switches: tuple[tuple[str, bool], ...],
) -> Variant:
    given, switched = dict(present), dict(switches)
    arguments: dict[str, object] = {}
    symbols: dict[str, sympy.Basic] = {}
    arrays: list[str] = []
    reals: list[str] = []
    differentiable: list[str] = []
    probabilities = False
    for p in spec.params:
        if isinstance(p, Tensor):
            symbols[p.name] = row_symbol(p.name, p.layout)
            arguments[p.name] = symbols[p.name]
            arrays.append(p.name)
            if p.differentiable:
                differentiable.append(p.name)
        elif isinstance(p, ClassTarget):
            probabilities = bool(p.probabilities_switch) and switched[p.probabilities_switch]
            if probabilities:
                symbols[p.name] = sympy.IndexedBase(p.name, real=True)
                differentiable.append(p.name)
            else:
                symbols[p.name] = sympy.Symbol(p.name, integer=True)
            arguments[p.name] = symbols[p.name]
            arrays.append(p.name)
        elif isinstance(p, OptionalTensor):
            if given[p.name]:
                symbols[p.name] = row_symbol(p.name, p.layout)
                arguments[p.name] = symbols[p.name]
                arrays.append(p.name)
            else:
                arguments[p.name] = Neutral(p.neutral)
        elif isinstance(p, Auxiliary):
            symbols[p.name] = row_symbol(p.name, p.layout)
            arguments[p.name] = symbols[p.name]
            arrays.append(p.name)
        elif isinstance(p, Real):
            symbols[p.name] = sympy.Symbol(p.name, real=True)
            arguments[p.name] = symbols[p.name] if given.get(p.name, True) else sympy.Integer(0)
            if p.specialize and special_value(p, str(dict(flags)[p.name])) is not None:
                arguments[p.name] = special_value(p, str(dict(flags)[p.name]))
            reals.append(p.name)
        elif isinstance(p, Flag):
            arguments[p.name] = dict(flags)[p.name]
    loss = build_loss(path, spec, arguments)
    loss = resolve_sums(loss)
    gradients = []
    for name in differentiable:
        base = symbols[name]
        gradients.append((name, resolve_sums(sympy.diff(loss, base[GRAD_CLASS]))))
    key = variant_key(flags + switches, present)
    selector_flags = flags + switches
    return Variant(key, selector_flags, present, tuple(arrays), tuple(reals), symbols, loss, tuple(gradients), probabilities)


@dataclass(frozen=True)
class ReductionRule:
    name: str  # 'none', 'sum', 'mean', or an extra reduction
    denominator: Denominator | None
    value: sympy.Expr  # f(S, D)
    coefficient: sympy.Expr  # df/dS


def symbols_for(spec: Loss) -> dict[str, sympy.Symbol]:
    return {
        p.name: sympy.Symbol(p.name, real=True)
        for p in spec.params
        if isinstance(p, (Tensor, OptionalTensor, Real))
    }


def variants(path: Path, spec: Loss) -> list[Variant]:
    if spec.kind in ("row", "pair"):
        return row_variants(path, spec)
    flags = [p for p in spec.params if isinstance(p, Flag)]
    optional = presence_dimensions(spec)
    symbols = symbols_for(spec)
    result = []
    for flag_values in itertools.product(*[f.values for f in flags]):
        for present_values in itertools.product((False, True), repeat=len(optional)):
            flag_pairs = tuple((f.name, v) for f, v in zip(flags, flag_values))
            present_pairs = tuple((o.name, v) for o, v in zip(optional, present_values))
            result.append(_variant(path, spec, symbols, flag_pairs, present_pairs))
    return result


def _variant(
    path: Path,
    spec: Loss,
    symbols: dict[str, sympy.Symbol],
    flags: tuple[tuple[str, bool], ...],
    present: tuple[tuple[str, bool], ...],
) -> Variant:
    given = dict(present)
    neutral = {p.name: p.neutral for p in spec.params if isinstance(p, OptionalTensor)}
    arguments: dict[str, object] = {}
    arrays: list[str] = []
    reals: list[str] = []
    nonzero: dict[sympy.Symbol, sympy.Symbol] = {}
    for p in spec.params:
        if isinstance(p, Tensor):
            arguments[p.name] = symbols[p.name]
            arrays.append(p.name)
        elif isinstance(p, OptionalTensor):
            arguments[p.name] = symbols[p.name] if given[p.name] else sympy.Integer(neutral[p.name])
            if given[p.name]:
                arrays.append(p.name)
        elif isinstance(p, Real):
            arguments[p.name] = symbols[p.name] if given.get(p.name, True) else sympy.Integer(0)
            if p.specialize_zero and given.get(p.name, True):
                # the kernel for nonzero values: sympy knows it, so the spec's branch for 0
                # (Piecewise((..., Eq(beta, 0)), ...)) folds away instead of running per element
                arguments[p.name] = sympy.Symbol(p.name, real=True, nonzero=True)
                nonzero[arguments[p.name]] = symbols[p.name]
            reals.append(p.name)
        elif isinstance(p, Flag):
            arguments[p.name] = dict(flags)[p.name]
    loss = build_loss(path, spec, arguments).xreplace(nonzero)
    allowed = {symbols[n] for n in arrays + reals}
    stray = loss.free_symbols - allowed
    if stray:
        raise SpecError(f"{path}: field 'element': unknown symbols {sorted(map(str, stray))}")
    gradients = tuple(
        (p.name, sympy.diff(loss, symbols[p.name]))
        for p in spec.params
        if isinstance(p, Tensor) and p.differentiable
    )
    key = variant_key(flags, present)
    return Variant(key, flags, present, tuple(arrays), tuple(reals), symbols, loss, gradients)


def build_loss(path: Path, spec: Loss, arguments: dict[str, object]) -> sympy.Expr:
    """Call the spec's element function; any failure names the spec file and the field."""
    try:
        loss = sympy.sympify(spec.element(**arguments))
    except Exception as error:
        raise SpecError(f"{path}: field 'element': building the loss failed: {type(error).__name__}: {error}") from error
    if not isinstance(loss, sympy.Expr):
        raise SpecError(f"{path}: field 'element': returned {type(loss).__name__}, not a SymPy expression")
    return loss


def presence_dimensions(spec: Loss) -> list[OptionalTensor | Real]:
    """What a variant may have or lack: each optional tensor (given or None), then each Real
    that specializes zero (nonzero or exactly 0). The runtime selects in the same order."""
    optional: list[OptionalTensor | Real] = [p for p in spec.params if isinstance(p, OptionalTensor)]
    return optional + [p for p in spec.params if isinstance(p, Real) and p.specialize_zero]


def variant_key(flags: tuple[tuple[str, object], ...], present: tuple[tuple[str, bool], ...]) -> str:
    """A readable, stable kernel-name suffix: boolean options by name when on, others as name+value."""
    on = [name if value is True else f"{name}{value}" for name, value in flags if value is not False]
    on += [name for name, value in present if value]
    return "_".join(sorted(on)) or "plain"


def reductions(spec: Loss) -> list[ReductionRule]:
    rules: list[tuple[str, Denominator | None]] = [("none", None), ("sum", None), ("mean", spec.mean)]
    rules += list(spec.extra_reductions)
    result = []
    for name, denominator in rules:
        value = SUM_SYMBOL if denominator is None else SUM_SYMBOL / DENOMINATOR_SYMBOL
        result.append(ReductionRule(name, denominator, value, sympy.diff(value, SUM_SYMBOL)))
    return result


def denominator_kind(rule: Denominator | None) -> tuple[str, str] | None:
    if rule is None:
        return None
    if isinstance(rule, Count):
        return ("count", "")
    if isinstance(rule, SumOf):
        return ("sum", rule.tensor)
    if isinstance(rule, BatchSize):
        return ("batch", rule.tensor)
    if isinstance(rule, TargetWeightSum):
        return ("target_weight", rule.weight)
    raise SpecError(f"unknown denominator {rule!r}")
