"""Stage 3, optimize: common subexpressions of the loss and its gradients, computed once.

Stability is the specs' business (they use the primitives in ``primitives.py``); this stage
only shares work, with canonical ordering and fixed temporary names so output is byte-stable.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from .lang import CLASSES, ClassSum


@dataclass(frozen=True)
class Shared:
    temporaries: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    outputs: tuple[sympy.Expr, ...]


def select_deltas(expr: sympy.Expr) -> sympy.Expr:
    """X * delta(a, b) -> (X if a == b else 0): off the diagonal the product is exactly 0 even
    where X is inf or nan (torch's kernels never multiply there)."""
    def rewrite(node: sympy.Mul) -> sympy.Expr:
        delta = next(f for f in node.args if isinstance(f, sympy.KroneckerDelta))
        rest = node.func(*[f for f in node.args if f is not delta])
        return sympy.Piecewise((rest, sympy.Eq(*delta.args)), (0, True))

    return expr.replace(
        lambda n: isinstance(n, sympy.Mul) and any(isinstance(f, sympy.KroneckerDelta) for f in n.args), rewrite
    )


def share(expressions: list[sympy.Expr]) -> Shared:
    """CSE over all expressions of one kernel body together."""
    names = sympy.numbered_symbols("_t", real=True)
    expressions = [select_deltas(sympy.sympify(e)) for e in expressions]
    temporaries, reduced = sympy.cse(expressions, symbols=names, order="canonical")
    return Shared(tuple(temporaries), tuple(reduced))


# ---------------------------------------------------------------------------------------------
# sums over the class axis (row losses)
# ---------------------------------------------------------------------------------------------

def resolve_sums(expr: sympy.Expr) -> sympy.Expr:
    """Resolve the Kronecker deltas that differentiation puts inside class sums, and hoist
    factors that do not depend on the summation index out of every sum.

    sum_c (A + delta(c, k) B) = sum_c A + B[c := k] for k in range (it always is: k is a class);
    sum_c (A + delta(k, t) B) = sum_c A + delta(k, t) sum_c B; a body is linear in each delta
    because derivatives of index expressions are. Works inside Piecewise too.
    """
    result: sympy.Expr = sympy.sympify(expr).replace(lambda node: isinstance(node, ClassSum), _resolve_sum)
    return result


def _resolve_sum(node: ClassSum) -> sympy.Expr:
    body, index = node.body, node.index
    deltas = sorted(body.atoms(sympy.KroneckerDelta), key=sympy.default_sort_key)
    for delta in deltas:
        marker = sympy.Dummy("delta")
        marked = sympy.sympify(body).xreplace({delta: marker})
        without = marked.xreplace({marker: 0})
        with_delta = sympy.sympify(marked.xreplace({marker: 1}) - without)
        rest = _resolve_sum(ClassSum(without, index))
        if index in delta.free_symbols:
            (other,) = [a for a in delta.args if a != index] or [index]
            return rest + with_delta.xreplace({index: other})
        return rest + delta * _resolve_sum(ClassSum(with_delta, index))
    return _hoist(body, index)


def _hoist(body: sympy.Expr, index: sympy.Symbol) -> sympy.Expr:
    # distribute only where that lets a factor leave the loop (w_c (lse - x_c) -> lse sum w_c - ...);
    # (1 - m_i) h_i stays whole: splitting it would only add a loop and a cancellation
    expanded = sympy.expand(body, deep=False, power_exp=False, power_base=False, log=False, multinomial=False)
    if any(
        not factor.is_Number and index not in factor.free_symbols
        for term in sympy.Add.make_args(expanded)
        for factor in sympy.Mul.make_args(term)
    ):
        body = expanded
    if body == 0:
        return sympy.Integer(0)
    if isinstance(body, sympy.Add):
        return sympy.Add(*[_hoist(term, index) for term in body.args])
    outside: list[sympy.Expr] = []
    inside: list[sympy.Expr] = []
    for factor in sympy.Mul.make_args(body):
        (inside if index in factor.free_symbols else outside).append(factor)
    if not inside:
        return sympy.Mul(*outside) * CLASSES
    return sympy.Mul(*outside) * ClassSum(sympy.Mul(*inside), index)
