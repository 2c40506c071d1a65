"""Lowering for the documentation: each loss as LaTeX strings (formulas before CSE)."""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from .derive import Variant, reductions, variants
from .lang import Auxiliary, BatchSize, ClassTarget, Int, TargetWeightSum, Count, Denominator, Flag, Legacy, OptionalTensor, Real, Reduction, SumOf, Tensor
from .load import LoadedSpec


@dataclass(frozen=True)
class DocParam:
    name: str
    kind: str
    default: str
    doc: str


@dataclass(frozen=True)
class DocVariant:
    title: str
    loss: str
    gradients: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DocPage:
    name: str
    spec_path: str
    summary: str
    params: tuple[DocParam, ...]
    differentiable: tuple[str, ...]
    not_differentiable: tuple[str, ...]
    reductions: tuple[tuple[str, str], ...]
    variants: tuple[DocVariant, ...]
    notes: tuple[str, ...]


def tex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                          ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("~", r"\~{}"),
                          ("^", r"\^{}")):
        text = text.replace(char, escaped)
    return text


def _symbol_names(variant: Variant) -> dict[sympy.Symbol, str]:
    return {symbol: r"\mathit{" + name.replace("_", r"\_") + "}" for name, symbol in variant.symbols.items()}


def tex(expr: sympy.Expr, names: dict[sympy.Symbol, str]) -> str:
    return str(sympy.latex(expr, symbol_names=names, ln_notation=False))


def _denominator_tex(rule: Denominator | None) -> str:
    if rule is None:
        return r"\sum_i \ell_i"
    if isinstance(rule, Count):
        return r"\frac{1}{n}\sum_i \ell_i \quad (n = \text{number of elements})"
    if isinstance(rule, SumOf):
        name = tex_escape(rule.tensor)
        return r"\sum_i \ell_i \Big/ \sum_j \mathit{" + name + r"}_j \quad (\text{by the count when no " + name + "})"
    if isinstance(rule, BatchSize):
        return r"\frac{1}{B}\sum_i \ell_i \quad (B = \text{size of dimension 0 of " + tex_escape(rule.tensor) + "})"
    if isinstance(rule, TargetWeightSum):
        name = tex_escape(rule.weight)
        return (r"\sum_i \ell_i \Big/ \sum_{i \text{ not ignored}} \mathit{" + name + r"}_{t_i}"
                r" \quad (\text{rows when the target is probabilities})")
    raise TypeError(rule)


def _variant_title(variant: Variant) -> str:
    parts = [f"{name}={value}" for name, value in variant.flags]
    parts += [f"{name} {'given' if given else 'None'}" for name, given in variant.present]
    return tex_escape(", ".join(parts)) if parts else "all options"


def _kind(p: object) -> str:
    return {Tensor: "tensor", OptionalTensor: "optional tensor", Real: "real", Flag: "flag",
            Legacy: "deprecated", Reduction: "reduction", ClassTarget: "class target",
            Int: "integer", Auxiliary: "computed"}[type(p)]


def _default(p: object) -> str:
    if isinstance(p, (Tensor, ClassTarget)):
        return "required"
    if isinstance(p, Auxiliary):
        return "(not a parameter)"
    if isinstance(p, (OptionalTensor, Legacy)):
        return "None"
    return repr(getattr(p, "default"))


def page(loaded: LoadedSpec) -> DocPage:
    spec = loaded.spec
    docs = []
    for v in variants(loaded.path, spec):
        names = _symbol_names(v)
        grads = tuple(
            (r"\frac{\partial \ell}{\partial " + names[v.symbols[n]] + "}", tex(g, names)) for n, g in v.gradients
        )
        docs.append(DocVariant(_variant_title(v), tex(v.loss, names), grads))
    tensors = [p for p in spec.params if isinstance(p, Tensor)]
    return DocPage(
        name=spec.name,
        spec_path=tex_escape(loaded.path.as_posix()),
        summary=tex_escape(spec.summary),
        params=tuple(
            DocParam(tex_escape(p.name), _kind(p), tex_escape(_default(p)), tex_escape(getattr(p, "doc", "")))
            for p in spec.params
        ),
        differentiable=tuple(tex_escape(t.name) for t in tensors if t.differentiable),
        not_differentiable=tuple(tex_escape(t.name) for t in tensors if not t.differentiable),
        reductions=tuple((tex_escape(r.name), _denominator_tex(r.denominator)) for r in reductions(spec) if r.name != "none"),
        variants=tuple(docs),
        notes=tuple(tex_escape(n) for n in spec.notes),
    )
