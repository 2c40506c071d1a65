"""The one printer from SymPy to Numba-compatible Python expressions."""
from __future__ import annotations

from typing import Any

import sympy
from sympy.codegen.cfunctions import log1p
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from .primitives import PRIMITIVES


class SpecError(Exception):
    """A spec that cannot be compiled; the message names the spec file and the field."""


# SymPy function -> Numba-callable name. Anything not here and not a primitive is an error.
KNOWN_FUNCTIONS: dict[Any, str] = {
    sympy.exp: "rt.fast_exp",  # vectorizable, <= 2 ulp (see the generated runtime)
    sympy.log: "rt.fast_log",
    log1p: "rt.fast_log1p",
    sympy.Abs: "abs",
    sympy.sin: "math.sin",
    sympy.cos: "math.cos",
    sympy.tan: "math.tan",
    sympy.sinh: "math.sinh",
    sympy.cosh: "math.cosh",
    sympy.tanh: "math.tanh",
    sympy.atan: "math.atan",
    sympy.erf: "math.erf",
    sympy.erfc: "math.erfc",
}


class shifted_exp(sympy.Function):  # type: ignore[misc]
    """exp(b - max b): a log-sum-exp's term shifted by the maximum of its exponents, so that its
    argument is <= 0 (or nan). Made by the row lowering after differentiation; printed as the
    runtime's exp for such arguments."""


class KernelPrinter(PythonCodePrinter):  # type: ignore[misc]
    """Prints scalar float64 expressions; every name it emits is a local of the kernel loop or
    a helper of the generated runtime (imported as ``rt``)."""

    def __init__(self) -> None:
        super().__init__({"fully_qualified_modules": False, "standard": "python3"})
        self._primitive_names = {p.__name__: p.NUMBA.name for p in PRIMITIVES}

    def _number(self, literal: str) -> str:
        """A float constant as the kernel spells it (the data-precision printer types it)."""
        return literal

    def _print_Function(self, expr: Any) -> str:
        name = type(expr).__name__
        if name in self._primitive_names:
            args = ", ".join(self._print(a) for a in expr.args)
            return f"rt.{self._primitive_names[name]}({args})"
        for function, printed in KNOWN_FUNCTIONS.items():
            if isinstance(expr, function):
                return f"{printed}({', '.join(self._print(a) for a in expr.args)})"
        raise SpecError(f"no Numba translation for the function {name!r} in {expr}")

    # PythonCodePrinter has its own printers for these; route them through the one table
    _print_exp = _print_log = _print_Abs = _print_log1p = _print_Function

    def _print_shifted_exp(self, expr: Any) -> str:
        return f"rt.fast_exp({self._print(expr.args[0])})"
    _print_sin = _print_cos = _print_tan = _print_Function
    _print_sinh = _print_cosh = _print_tanh = _print_atan = _print_Function
    _print_erf = _print_erfc = _print_Function

    def _print_two_forms(self, expr: Any) -> str:
        # only the evaluated form: the other exists for differentiation
        return f"({self._print(expr.args[0])})"

    def _print_sign(self, expr: Any) -> str:
        # torch: sign(0) = 0 and sign(nan) = 0
        z = self._print(expr.args[0])
        one, minus_one, zero = (self._number(v) for v in ("1.0", "-1.0", "0.0"))
        return f"({one} if {z} > {zero} else ({minus_one} if {z} < {zero} else {zero}))"

    def _print_KroneckerDelta(self, expr: Any) -> str:
        a, b = (self._print(i) for i in expr.args)
        return f"({self._number('1.0')} if {a} == {b} else {self._number('0.0')})"

    def _print_Indexed(self, expr: Any) -> str:
        # indices are integer loop variables or class targets: printed as they are
        return f"{expr.base}[{', '.join(str(i) for i in expr.indices)}]"

    def _print_Max(self, expr: Any) -> str:
        return self._minmax(expr, ">")

    def _print_Min(self, expr: Any) -> str:
        return self._minmax(expr, "<")

    def _minmax(self, expr: Any, op: str) -> str:
        args = [self._print(a) for a in sorted(expr.args, key=sympy.default_sort_key)]
        result = str(args[0])
        for other in args[1:]:
            result = f"({result} if {result} {op} {other} else {other})"
        return result

    def _print_Piecewise(self, expr: Any) -> str:
        if expr.args[-1].cond is not sympy.true:
            raise SpecError(f"a Piecewise needs a final (value, True) branch: {expr}")
        result = str(self._print(expr.args[-1].expr))
        for branch in reversed(expr.args[:-1]):
            result = f"({self._print(branch.expr)} if {self._print(branch.cond)} else {result})"
        return result

    def _print_Pow(self, expr: Any, rational: bool = False) -> str:
        base, exponent = expr.args
        b = self.parenthesize(base, sympy.printing.precedence.PRECEDENCE["Mul"] + 1)
        if exponent.is_Integer and 0 < abs(int(exponent)) <= 4:
            product = "*".join([b] * abs(int(exponent)))
            return f"({product})" if exponent > 0 else f"({self._number('1.0')}/({product}))"
        if exponent == sympy.Rational(1, 2):
            return f"math.sqrt({self._print(base)})"
        if exponent == -sympy.Rational(1, 2):
            return f"({self._number('1.0')}/math.sqrt({self._print(base)}))"
        return f"({b}**{self._print(exponent)})"

    def _print_Rational(self, expr: Any) -> str:
        return self._number(repr(float(expr)))

    _print_Half = _print_Rational

    def _print_Integer(self, expr: Any) -> str:
        return self._number(f"{int(expr)}.0")

    def _print_Float(self, expr: Any) -> str:
        return self._number(repr(float(expr)))

    def _print_Pi(self, expr: Any) -> str:
        return self._number(repr(float(sympy.pi)))

    def _print_Exp1(self, expr: Any) -> str:
        return self._number(repr(float(sympy.E)))

    def _print_NaN(self, expr: Any) -> str:
        return self._number("math.nan")

    def _print_Infinity(self, expr: Any) -> str:
        return self._number("math.inf")

    def _print_NegativeInfinity(self, expr: Any) -> str:
        return self._number("(-math.inf)")

    def _print_BooleanTrue(self, expr: Any) -> str:
        return "True"

    def _print_BooleanFalse(self, expr: Any) -> str:
        return "False"


class PrecisionPrinter(KernelPrinter):
    """Transcendentals in the precision of the kernel's data: ``rt.exp_as(x, like)`` (also log,
    log1p, and the primitives that call them, ``rt.NAME_as(..., like)``) computes in float32 when
    the array ``like`` holds float32, in float64 otherwise. The argument is rounded to float32, as
    torch rounds it computing in float32, and the result is accurate to float32, the precision of
    the output; the arithmetic around it stays float64."""

    twin = "_as"  # the runtime's suffix of these functions

    def __init__(self, like: str) -> None:
        super().__init__()
        self.like = like
        self._twinned = {p.__name__: p.NUMBA.name for p in PRIMITIVES if p.NUMBA.transcendental}

    def _call(self, name: str, args: Any) -> str:
        printed = "".join(f"{self._print(a)}, " for a in args)
        return f"rt.{name}{self.twin}({printed}{self.like})"

    def _print_Function(self, expr: Any) -> str:
        name = type(expr).__name__
        if name in self._twinned:
            return self._call(self._twinned[name], expr.args)
        return str(KernelPrinter._print_Function(self, expr))

    def _print_exp(self, expr: Any) -> str:
        return self._call("exp", expr.args)

    def _print_shifted_exp(self, expr: Any) -> str:
        return f"rt.shifted_exp_as({self._print(expr.args[0])}, {self.like})"  # row kernels only

    def _print_log(self, expr: Any) -> str:
        return self._call("log", expr.args)

    def _print_log1p(self, expr: Any) -> str:
        return self._call("log1p", expr.args)


DATA_FLOAT = "F"  # the kernel local that holds the data's float type (rt.data_float)


class DataPrecisionPrinter(PrecisionPrinter):
    """The arithmetic too in the data's precision (a spec's ``float32_arithmetic``): every
    constant and Real is typed ``F(...)``, where the kernel sets ``F = rt.data_float(like)``,
    and every exp, log and primitive is its ``_in`` twin, which returns the data's type; so
    float32 data is computed in float32, at twice the vector width of float64.

    Sums are ordered so that differences of the data come first: sympy flattens
    ``(input - target) - beta/2`` into one Add, and ``-beta/2 + input - target`` would round
    the large ``input - beta/2`` before the cancellation; torch subtracts the data first."""

    twin = "_in"

    def __init__(self, like: str, data: tuple[str, ...], reals: tuple[str, ...], leading: tuple[str, ...] = ()) -> None:
        super().__init__(like)
        self._twinned = dict(self._primitive_names)  # every primitive has an _in twin
        self._data = set(data)
        self._reals = set(reals)
        self._leading = set(leading)

    def _number(self, literal: str) -> str:
        return f"{DATA_FLOAT}({literal})"

    def _print_Symbol(self, expr: Any) -> str:
        name = str(super()._print_Symbol(expr))
        return self._number(name) if expr.name in self._reals else name

    def _print_Mul(self, expr: Any) -> str:
        """The upstream gradient (``leading``) multiplied in first, as torch's autograd does:
        scale*w*(2x - 2t) is (scale*w)*(...), where w*(2x - 2t) alone overflows float32 at w =
        x = 1e30 and torch's product does not."""
        factors = list(expr.as_ordered_factors())
        leading = [f for f in factors if isinstance(f, sympy.Symbol) and f.name in self._leading]
        if not leading:
            return str(super()._print_Mul(expr))
        rest = sympy.Mul(*[f for f in factors if f not in leading])
        sign = "-" if rest.could_extract_minus_sign() else ""
        rest = -rest if sign else rest
        text = sign + "*".join(self._print(f) for f in leading)
        return text if rest == 1 else f"{text}*{self.parenthesize(rest, PRECEDENCE['Mul'], strict=True)}"

    def _is_datum(self, term: sympy.Expr) -> bool:
        """An element of the data, or its negation."""
        symbol = -term if term.could_extract_minus_sign() else term
        return isinstance(symbol, sympy.Symbol) and symbol.name in self._data

    def _as_ordered_terms(self, expr: Any, order: Any = None) -> list[Any]:
        terms = list(super()._as_ordered_terms(expr, order=order))
        return [t for t in terms if self._is_datum(t)] + [t for t in terms if not self._is_datum(t)]


_PRINTER = KernelPrinter()


def to_code(expr: sympy.Expr, like: str = "", data: tuple[str, ...] | None = None, reals: tuple[str, ...] = (),
            leading: tuple[str, ...] = ()) -> str:
    """The Numba source of one scalar expression; with ``like`` (the name of a kernel array),
    exponentials and logarithms are computed in that array's precision; with ``data`` (the
    names of the loaded array elements) too all the arithmetic (``DataPrecisionPrinter``, which
    multiplies the ``leading`` symbols in first)."""
    if data is not None:
        return str(DataPrecisionPrinter(like, data, reals, leading).doprint(expr))
    return str((PrecisionPrinter(like) if like else _PRINTER).doprint(expr))
