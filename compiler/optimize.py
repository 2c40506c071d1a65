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
