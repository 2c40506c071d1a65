"""Stage 4, lower: SymPy to the kernel IR, frozen dataclasses of printed strings.

Templates receive only this IR: they make no mathematical decisions.
"""
from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path

import sympy

from .derive import ReductionRule, Variant, denominator_kind, reductions, variants
from .lang import Flag, Legacy, Loss, OptionalTensor, Real, Reduction, Tensor
from .load import LoadedSpec
from .optimize import share
from .printer import SpecError, to_code


@dataclass(frozen=True)
class Body:
    """One loop body: temporaries, then the loss value and/or the gradients."""

    temporaries: tuple[tuple[str, str], ...]
    loss: str  # '' when the body computes no loss
    gradients: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class KernelVariant:
    key: str
    selector: str  # the Python tuple literal the runtime looks this variant up by
    arrays: tuple[str, ...]
    reals: tuple[str, ...]
    differentiable: tuple[str, ...]
    forward: Body
    backward: Body
    fused: Body


@dataclass(frozen=True)
class SignatureParam:
    name: str
    default: str  # Python literal, '' when required


@dataclass(frozen=True)
class ReductionIR:
    name: str
    denominator: str  # Python literal of the runtime rule, 'None' for none/sum
    value: str  # lambda S, D: ...
    coefficient: str  # lambda D: ...


@dataclass(frozen=True)
class ElementwiseIR:
    name: str
    spec_path: str
    summary: str
    signature: tuple[SignatureParam, ...]
    arrays: tuple[str, ...]
    required: tuple[str, ...]
    differentiable: tuple[str, ...]
    optional: tuple[str, ...]
    reals: tuple[str, ...]
    flags: tuple[str, ...]
    legacy: bool
    result_dtype: str
    integers_promote: bool
    reductions: tuple[ReductionIR, ...]
    prepare_source: str  # '' when the spec has no prepare step
    variants: tuple[KernelVariant, ...]


def body(variant: Variant, with_loss: bool, with_gradients: bool) -> Body:
    expressions: list[sympy.Expr] = [variant.loss] if with_loss else []
    names = [name for name, _ in variant.gradients] if with_gradients else []
    expressions += [grad for _, grad in variant.gradients] if with_gradients else []
    shared = share(expressions)
    temporaries = tuple((str(symbol), to_code(expr)) for symbol, expr in shared.temporaries)
    outputs = [to_code(expr) for expr in shared.outputs]
    loss = outputs.pop(0) if with_loss else ""
    return Body(temporaries, loss, tuple(zip(names, outputs)))


def lower_variant(variant: Variant) -> KernelVariant:
    selector_values = [value for _, value in variant.flags] + [value for _, value in variant.present]
    selector = "(" + "".join(f"{value}, " for value in selector_values) + ")"
    return KernelVariant(
        key=variant.key,
        selector=selector,
        arrays=variant.arrays,
        reals=variant.reals,
        differentiable=tuple(name for name, _ in variant.gradients),
        forward=body(variant, True, False),
        backward=body(variant, False, True),
        fused=body(variant, True, True),
    )


def _literal(value: object) -> str:
    return repr(value)


def signature(spec: Loss) -> tuple[SignatureParam, ...]:
    params = []
    for p in spec.params:
        if isinstance(p, Tensor):
            params.append(SignatureParam(p.name, ""))
        elif isinstance(p, (OptionalTensor, Legacy)):
            params.append(SignatureParam(p.name, "None"))
        elif isinstance(p, (Real, Flag)):
            params.append(SignatureParam(p.name, _literal(p.default)))
        elif isinstance(p, Reduction):
            params.append(SignatureParam(p.name, _literal(p.default)))
    return tuple(params)


def lower_reduction(rule: ReductionRule) -> ReductionIR:
    from .derive import DENOMINATOR_SYMBOL, SUM_SYMBOL

    value = to_code(rule.value.subs({SUM_SYMBOL: sympy.Symbol("S"), DENOMINATOR_SYMBOL: sympy.Symbol("D")}))
    coefficient = to_code(rule.coefficient.subs(DENOMINATOR_SYMBOL, sympy.Symbol("D")))
    return ReductionIR(
        name=rule.name,
        denominator=repr(denominator_kind(rule.denominator)),
        value=f"lambda S, D: {value}",
        coefficient=f"lambda D: {coefficient}",
    )


def prepare_source(path: Path, spec: Loss) -> str:
    if spec.prepare is None:
        return ""
    source = textwrap.dedent(inspect.getsource(spec.prepare))
    header = f"def {spec.prepare.__name__}(a):"
    if header not in source:
        raise SpecError(f"{path}: field 'prepare': expected a plain '{header}' definition")
    return source.replace(header, "def _prepare(a):", 1).rstrip() + "\n"


def lower_variants(path: Path, spec: Loss) -> tuple[KernelVariant, ...]:
    """Every variant's kernels; a printing error names the spec file and its field."""
    try:
        return tuple(lower_variant(v) for v in variants(path, spec))
    except SpecError as error:
        if str(error).startswith(str(path)):
            raise
        raise SpecError(f"{path}: field 'element': {error}") from error


def lower(loaded: LoadedSpec) -> ElementwiseIR:
    spec, path = loaded.spec, loaded.path
    if not any(isinstance(p, Tensor) and p.differentiable for p in spec.params):
        raise SpecError(f"{path}: field 'params': at least one Tensor must be differentiable")
    return ElementwiseIR(
        name=spec.name,
        spec_path=path.as_posix(),
        summary=spec.summary,
        signature=signature(spec),
        arrays=tuple(p.name for p in spec.params if isinstance(p, (Tensor, OptionalTensor))),
        required=tuple(p.name for p in spec.params if isinstance(p, Tensor)),
        differentiable=tuple(p.name for p in spec.params if isinstance(p, Tensor) and p.differentiable),
        optional=tuple(p.name for p in spec.params if isinstance(p, OptionalTensor)),
        reals=tuple(p.name for p in spec.params if isinstance(p, Real)),
        flags=tuple(p.name for p in spec.params if isinstance(p, Flag)),
        legacy=any(isinstance(p, Legacy) for p in spec.params),
        result_dtype=spec.result_dtype,
        integers_promote=spec.integers_promote,
        reductions=tuple(lower_reduction(r) for r in reductions(spec)),
        prepare_source=prepare_source(path, spec),
        variants=lower_variants(path, spec),
    )
