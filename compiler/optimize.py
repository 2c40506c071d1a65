"""Stage 3, optimize: common subexpressions of the loss and its gradients, computed once.

Stability is the specs' business (they use the primitives in ``primitives.py``); this stage
only shares work, with canonical ordering and fixed temporary names so output is byte-stable.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy


@dataclass(frozen=True)
class Shared:
    temporaries: tuple[tuple[sympy.Symbol, sympy.Expr], ...]
    outputs: tuple[sympy.Expr, ...]


def share(expressions: list[sympy.Expr]) -> Shared:
    """CSE over all expressions of one kernel body together."""
    names = sympy.numbered_symbols("_t", real=True)
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
    because derivatives of index expressions are. Works inside Piecewise, where SymPy's own
    ``doit`` does not.
    """
    return expr.replace(lambda node: isinstance(node, sympy.Sum), _resolve_sum)


def _resolve_sum(node: sympy.Sum) -> sympy.Expr:
    body = node.function
    (index, low, high) = node.limits[0]
    deltas = sorted(body.atoms(sympy.KroneckerDelta), key=sympy.default_sort_key)
    for delta in deltas:
        marker = sympy.Dummy("delta")
        marked = sympy.sympify(body).xreplace({delta: marker})
        without = marked.xreplace({marker: 0})
        with_delta = marked.xreplace({marker: 1})
        rest = _resolve_sum(sympy.Sum(without, (index, low, high)))
        if index in delta.free_symbols:
            (other,) = [a for a in delta.args if a != index] or [index]
            return rest + sympy.sympify(with_delta - without).xreplace({index: other})
        return rest + delta * _resolve_sum(sympy.Sum(with_delta - without, (index, low, high)))
    return _hoist(body, index, low, high)


def _hoist(body: sympy.Expr, index: sympy.Symbol, low: sympy.Expr, high: sympy.Expr) -> sympy.Expr:
    body = sympy.expand(body, deep=False, power_exp=False, power_base=False, log=False, multinomial=False)
    if body == 0:
        return sympy.Integer(0)
    if isinstance(body, sympy.Add):
        return sympy.Add(*[_hoist(term, index, low, high) for term in body.args])
    outside: list[sympy.Expr] = []
    inside: list[sympy.Expr] = []
    for factor in sympy.Mul.make_args(body):
        (inside if index in factor.free_symbols else outside).append(factor)
    if not inside:
        return sympy.Mul(*outside) * (high - low + 1)
    return sympy.Mul(*outside) * sympy.Sum(sympy.Mul(*inside), (index, low, high))
