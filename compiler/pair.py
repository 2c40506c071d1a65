"""Pair and chain kernel shapes: reductions over the feature axis of two or three tensors, and
losses of distances that a distance function computes.

- kind='pair' (cosine_similarity, pairwise_distance, cosine_embedding_loss, triplet_margin_loss):
  the spec writes sums and maxima over FEATURE (``lang.feature_sum``, ``lang.p_norm``); these are
  the row shape's class sums over the last axis, so derivation (``derive.row_variants``), lowering
  (``lower._RowLowering``) and the kernel template (``row.py.j2``) are the row shape's. Only the
  runtime driver differs (``_pair.PairLoss``): the tensors broadcast against each other, a feature
  axis other than the last (cosine_similarity's dim) is moved last, 'row'-layout tensors hold one
  value per row, and pair functions without a reduction are distances (``NAME.losscc_backward``).
- kind='chain' (triplet_margin_with_distance_loss): the spec's element calls a ``Distance``
  argument, ``distance(a, b)``, which stands for an opaque distance symbol per row. The compiler
  derives an elementwise loss of those distances (its gradient in each distance by sympy.diff) and
  renders it as a private elementwise module; at run time ``_pair.ChainLoss`` computes each
  distance with the compiled distance function given, runs the elementwise kernel, and passes its
  gradients in the distances to the distance's compiled backward as grad_output. Every gradient
  is still derived by the compiler: the chain rule across the two is the only glue.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import sympy

from .derive import special_label
from .docs import DocPage, page
from .lang import Bool, Distance, Flag, Int, Loss, Real, Reduction, Tensor
from .load import LoadedSpec
from .lower import ElementwiseIR, RowIR, SignatureParam, lower, lower_row, prepare_source, signature
from .printer import SpecError


# ---------------------------------------------------------------------------------------------
# pair: row kernels over the feature axis
# ---------------------------------------------------------------------------------------------

def is_distance(spec: Loss) -> bool:
    """A pair function without a reduction maps two tensors to one value per row: a distance."""
    return spec.kind == "pair" and not any(isinstance(p, Reduction) for p in spec.params)


def _specials(spec: Loss) -> str:
    """{name: {value: kernel label}} of the Reals compiled at fixed values, as a Python literal."""
    found = {p.name: {_literal_float(v): special_label(v) for v in p.specialize}
             for p in spec.params if isinstance(p, Real) and p.specialize}
    return "{" + ", ".join(
        f"{name!r}: {{" + ", ".join(f"{value}: {label!r}" for value, label in labels.items()) + "}"
        for name, labels in found.items()) + "}"


def _literal_float(value: Any) -> str:
    number = float(value)
    return "math.inf" if number == math.inf else "-math.inf" if number == -math.inf else repr(number)


def lower_pair(loaded: LoadedSpec) -> RowIR:
    spec = loaded.spec
    ir = lower_row(loaded)
    fields = (
        ("specials", _specials(spec)),
        ("feature_dim", repr(spec.feature_dim)),
        ("shape_flags", repr(tuple(p.name for p in spec.params if isinstance(p, Bool)))),
        ("reduced", repr(not is_distance(spec))),
        ("integers_promote", repr(spec.integers_promote)),
    )
    epilogue = ""
    if is_distance(spec):
        epilogue = (
            f"# the distance protocol: triplet_margin_with_distance_loss chains this function's\n"
            f"# backward after the loss's gradient in the distances\n"
            f"{spec.name}.losscc_backward = {spec.name}_backward\n"
        )
    # a distance has no reduction: its kernels always store one value per row
    return replace(ir, driver="_pair.PairLoss", driver_fields=fields, epilogue=epilogue)


def pair_page(loaded: LoadedSpec) -> DocPage:
    return replace(page(loaded), row=False, features=True)


def validate(path: str, spec: Loss) -> None:
    """Fields a pair or chain spec must get right (called by load.validate_kind)."""
    def fail(field: str, message: str) -> SpecError:
        return SpecError(f"{path}: field '{field}': {message}")

    tensors = [p for p in spec.params if isinstance(p, Tensor)]
    if spec.kind == "chain":
        if sum(isinstance(p, Distance) for p in spec.params) != 1:
            raise fail("params", "a chain loss takes exactly one Distance(...) argument")
        return
    if not tensors or tensors[0].layout != "rows":
        raise fail("params", "a pair loss starts with a Tensor of layout 'rows'")
    if any(p.layout not in ("rows", "row") for p in tensors):
        raise fail("params", "every tensor of a pair loss has layout 'rows' (features) or 'row'")
    ints = {p.name for p in spec.params if isinstance(p, Int)}
    if spec.feature_dim and spec.feature_dim not in ints:
        raise fail("feature_dim", f"{spec.feature_dim!r} must name an Int parameter")


def check_fused(loaded: list[LoadedSpec]) -> None:
    """Hold each chain spec's Distance(fused=...) to its claim as far as signatures go: the fused
    spec is a pair spec of the same directory taking the chain's tensors in order and its options
    with the same defaults, and each further option of it (but torch's legacy ones) has the
    default of the default distance's option of that name. That the formulas agree is for the
    tests to show (tests/test_distances.py)."""
    by_name = {item.spec.name: item for item in loaded}
    for item in loaded:
        distance = next((p for p in item.spec.params if isinstance(p, Distance)), None)
        if distance is None or not distance.fused:
            continue

        def fail(message: str, path: Any = item.path) -> SpecError:
            return SpecError(f"{path}: field 'params': Distance fused={distance.fused!r}: {message}")

        fused, default = by_name.get(distance.fused), by_name.get(distance.default)
        if fused is None or fused.spec.kind != "pair":
            raise fail("no pair spec of that name among the specs built with it")
        if default is None:
            raise fail(f"its default distance {distance.default!r} is not among the specs built with it")
        tensors = [p.name for p in item.spec.params if isinstance(p, Tensor)]
        if [p.name for p in fused.spec.params if isinstance(p, Tensor)] != tensors:
            raise fail(f"it must take the tensors {tensors}, in that order")
        fused_options = {p.name: p for p in fused.spec.params if isinstance(p, (Real, Flag, Reduction, Bool, Int))}
        for option in (p for p in item.spec.params if isinstance(p, (Real, Flag, Reduction))):
            theirs = fused_options.pop(option.name, None)
            if theirs is None or type(theirs) is not type(option) or theirs.default != option.default:
                raise fail(f"its option {option.name!r} must be a {type(option).__name__} with default {option.default!r}")
        distance_defaults = {p.name: p.default for p in default.spec.params if isinstance(p, (Real, Flag, Bool, Int))}
        for name, further in fused_options.items():
            if name not in distance_defaults or distance_defaults[name] != further.default:
                raise fail(f"its option {name!r} (default {further.default!r}) must have the default of "
                           f"{distance.default}'s option of that name")


# ---------------------------------------------------------------------------------------------
# chain: an elementwise loss of distances
# ---------------------------------------------------------------------------------------------

class _Operand:
    """A tensor argument inside a chain loss's element: it may only be passed to the distance."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        raise SpecError(f"tensor {self.name!r} of a chain loss enters the loss only through the distance function")


@dataclass(frozen=True)
class ChainIR:
    name: str
    spec_path: str
    summary: str
    signature: tuple[SignatureParam, ...]
    tensors: tuple[str, ...]  # the required tensors, in order
    distance: str  # the Distance argument's name
    default_distance: str  # the compiled function used for None
    fused: str  # Distance.fused: the pair loss that calls with the default distance run, or ''
    pairs: tuple[tuple[str, str], ...]  # distance i is distance(pairs[i])
    flags: tuple[str, ...]
    used: str  # Python literal: {flag values: indices of the pairs that variant uses}
    prepare_source: str
    inner: ElementwiseIR  # the loss of the distances, rendered as a private module


def _distance_param(spec: Loss) -> Distance:
    return next(p for p in spec.params if isinstance(p, Distance))


def distance_name(pair: tuple[str, str]) -> str:
    return f"distance_{pair[0]}_{pair[1]}"


def inner_spec(loaded: LoadedSpec, name: str = "") -> tuple[Loss, tuple[tuple[str, str], ...], dict[tuple[Any, ...], tuple[int, ...]]]:
    """The elementwise loss of the distances that ``spec.element`` computes from its tensors:
    (inner spec, the pairs in order of first use, {flag values: the pairs each variant uses})."""
    spec = loaded.spec
    tensors = [p.name for p in spec.params if isinstance(p, Tensor)]
    flags = [p for p in spec.params if isinstance(p, Flag)]
    reals = [p for p in spec.params if isinstance(p, Real)]
    distance = _distance_param(spec)
    pairs: list[tuple[str, str]] = []

    def call(flag_values: tuple[Any, ...], given: dict[str, Any] | None) -> tuple[sympy.Expr, set[int]]:
        used: set[int] = set()

        def measure(a: _Operand, b: _Operand) -> sympy.Symbol:
            if not (isinstance(a, _Operand) and isinstance(b, _Operand)):
                raise SpecError(f"{loaded.path}: field 'element': the distance takes two of the tensors {tensors}")
            pair = (a.name, b.name)
            if pair not in pairs:
                pairs.append(pair)
            used.add(pairs.index(pair))
            return (given or {}).get(distance_name(pair)) or sympy.Symbol(distance_name(pair), real=True)

        arguments: dict[str, Any] = {t: _Operand(t) for t in tensors}
        arguments[distance.name] = measure
        arguments.update({p.name: sympy.Symbol(p.name, real=True) if given is None else given[p.name] for p in reals})
        arguments.update({f.name: v for f, v in zip(flags, flag_values)})
        try:
            value = sympy.sympify(spec.element(**arguments))
        except SpecError:
            raise
        except Exception as error:
            raise SpecError(f"{loaded.path}: field 'element': building the loss failed: {type(error).__name__}: {error}") from error
        return value, used

    combos = list(_product([f.values for f in flags]))
    used_by = {values: tuple(sorted(call(values, None)[1])) for values in combos}

    def element(**kw: Any) -> sympy.Expr:
        return call(tuple(kw[f.name] for f in flags), kw)[0]

    params: list[Any] = [Tensor(distance_name(pair), differentiable=True, doc=f"{distance.name}({pair[0]}, {pair[1]})")
                         for pair in pairs]
    params += [p for p in spec.params if isinstance(p, (Real, Flag, Reduction))]
    inner = replace(spec, name=name or spec.name, params=tuple(params), element=element, kind="elementwise",
                    prepare=None, integers_promote=False)
    return inner, tuple(pairs), used_by


def _product(axes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    import itertools

    return list(itertools.product(*axes))


def lower_chain(loaded: LoadedSpec) -> ChainIR:
    spec = loaded.spec
    inner, pairs, used = inner_spec(loaded, f"_{spec.name}_distances")
    distance = _distance_param(spec)
    return ChainIR(
        name=spec.name,
        spec_path=loaded.path.as_posix(),
        summary=spec.summary,
        signature=signature(spec),
        tensors=tuple(p.name for p in spec.params if isinstance(p, Tensor)),
        distance=distance.name,
        default_distance=distance.default,
        fused=distance.fused,
        pairs=pairs,
        flags=tuple(p.name for p in spec.params if isinstance(p, Flag)),
        used=repr(used),
        prepare_source=prepare_source(loaded.path, spec),
        inner=lower(LoadedSpec(loaded.path, inner)),
    )


def chain_page(loaded: LoadedSpec) -> DocPage:
    inner, pairs, _ = inner_spec(loaded)
    distance = _distance_param(loaded.spec)
    note = (f"The loss is compiled as a function of the distances {', '.join(distance_name(p) for p in pairs)}; "
            f"at run time each is {distance.name}(a, b), a compiled pair function (default {distance.default}), "
            f"and its compiled backward receives the loss's gradient in that distance as grad_output.")
    return page(LoadedSpec(loaded.path, replace(inner, notes=(note,) + inner.notes)))
