"""Numerically stable primitives: the only place where a derivative is written by hand.

Each primitive is an opaque SymPy ``Function`` with
- ``fdiff``: its derivative (stable form), so ``sympy.diff`` of any spec that uses it is derived;
- ``_latex``: how the documentation shows it;
- ``NUMBA``: the one rendered Numba helper (name and body) that the printer calls.
Every primitive is tested against its plain rewrite in ``tests/test_primitives.py``.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

import sympy
from sympy.codegen.cfunctions import log1p
from sympy.core.function import ArgumentIndexError

# torch's binary_cross_entropy clamps each log at -100 and its input gradient divides by
# max(x(1-x), 1e-12) (aten/src/ATen/native/Loss.cpp); both live here and nowhere else.
BCE_LOG_FLOOR = -100
BCE_GRAD_EPS = sympy.Float(9.999999960041972e-13)  # torch's EPSILON is the float32 nearest 1e-12


@dataclass(frozen=True)
class NumbaHelper:
    """A scalar helper rendered once into the generated runtime."""

    name: str
    params: tuple[str, ...]
    body: str  # Python source of the function body, indented by four spaces

    @property
    def transcendental(self) -> bool:
        """Whether the body calls the runtime's exp, log, log1p or log_of_unit: such a helper
        also has a twin in the data's precision, ``NAME_as(..., like)`` (see ``exp_as``)."""
        return bool(_TRANSCENDENTAL_CALL.search(self.body))

    @property
    def body_as(self) -> str:
        """The body with each ``fast_f(x)`` (or ``log_of_unit(x)``) written ``f_as(x, like)``,
        and each call of a staged form that has that twin (softplus_of) likewise."""
        return self._with_twins("_as")

    @property
    def body_in(self) -> str:
        """The body wholly in the data's precision (``NAME_in(..., like)``, for the kernels of a
        spec with ``float32_arithmetic``): ``f_in(x, like)``, which return the data's type, and
        every float constant typed ``F(...)``, F = data_float(like)."""
        body = _FLOAT_LITERAL.sub(r"F(\1)", self._with_twins("_in"))
        return ("    F = data_float(like)\n" if "F(" in body else "") + body

    def _with_twins(self, suffix: str) -> str:
        body = self.body
        calls = [(m, m.group(1)) for m in _TRANSCENDENTAL_CALL.finditer(body)]
        staged = {form.NUMBA.name: form.NUMBA for form in STAGED.values()}
        calls += [(m, m.group(1)) for m in re.finditer(r"(?<![\w.])(\w+)\(", body)
                  if m.group(1) in staged and (suffix == "_in" or staged[m.group(1)].transcendental)]
        for match, name in sorted(calls, key=lambda call: -call[0].start()):  # the last first: the
            depth, end = 1, match.end()                                       # earlier stay in place
            while depth:  # to the parenthesis that closes the call
                depth += {"(": 1, ")": -1}.get(body[end], 0)
                end += 1
            body = f"{body[:match.start()]}{name}{suffix}({body[match.end():end - 1]}, like){body[end:]}"
        return body


_TRANSCENDENTAL_CALL = re.compile(r"(?<![\w.])(?:fast_)?(exp|log1p|log|log_of_unit)\(")
_FLOAT_LITERAL = re.compile(r"(?<![\w.])(\d+\.\d+(?:e[-+]?\d+)?)(?![\w.])")


class Primitive(sympy.Function):  # type: ignore[misc]
    """Base of the stable primitives; subclasses set NUMBA and LATEX."""

    NUMBA: NumbaHelper
    LATEX: str  # str.format template over the printed arguments a0, a1, ...

    @classmethod
    def eval(cls, *args: Any) -> Any:  # keep primitives opaque: never auto-evaluate
        return None

    def _latex(self, printer: Any, exp: Any = None) -> str:
        printed = {f"a{i}": printer._print(arg) for i, arg in enumerate(self.args)}
        text = self.LATEX.format(**printed)
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


class softplus(Primitive):
    """log(1 + exp(z)) without overflow: max(z, 0) + log1p(exp(-|z|))."""

    nargs = 1
    NUMBA = NumbaHelper(
        "softplus",
        ("z",),
        "    return softplus_of(z, fast_exp(-abs(z)))\n",
    )
    LATEX = r"\operatorname{{softplus}}\left({a0}\right)"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sigmoid(self.args[0])


class sigmoid(Primitive):
    """1 / (1 + exp(-z)), evaluated on the side where exp cannot overflow."""

    nargs = 1
    NUMBA = NumbaHelper(
        "sigmoid",
        ("z",),
        "    return sigmoid_of(z, fast_exp(-abs(z)))\n",
    )
    LATEX = r"\sigma\left({a0}\right)"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)


class _Staged(Primitive):
    """A primitive's evaluation from its argument z and e = exp(-|z|), computed before it: the
    kernels compute the exponentials of a block of elements in a loop of their own (lower's
    ``stage_exponentials``), because one loop that chains exp, a division and a log per element
    waits on their latency (measured there). Made by the lowering after differentiation: never
    differentiated."""

    nargs = 2

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        # not ArgumentIndexError: sympy would answer with an unevaluated Derivative
        raise TypeError(f"{type(self).__name__} is made after differentiation and has no derivative")


class softplus_of(_Staged):
    """softplus(z) given e = exp(-|z|), which is in [0, 1]: log_of_unit needs no range
    reduction there (nan stays nan)."""

    NUMBA = NumbaHelper("softplus_of", ("z", "e"), "    return (z if z > 0.0 else 0.0) + log_of_unit(e)\n")
    LATEX = r"\operatorname{{softplus}}\left({a0}\right)"


class sigmoid_of(_Staged):
    """sigmoid(z) given e = exp(-|z|)."""

    NUMBA = NumbaHelper("sigmoid_of", ("z", "e"), "    return 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)\n")
    LATEX = r"\sigma\left({a0}\right)"


# the primitives whose evaluation starts with exp(-|z|), and their staged forms
STAGED: dict[type[Primitive], type[Primitive]] = {sigmoid: sigmoid_of, softplus: softplus_of}


class ratio(Primitive):
    """a / b kept unsimplified, so that t/t stays nan at t = 0 exactly as torch's autograd."""

    nargs = 2
    NUMBA = NumbaHelper("ratio", ("a", "b"), "    return a / b\n")
    LATEX = r"\frac{{{a0}}}{{{a1}}}"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        a, b = self.args
        return 1 / b if argindex == 1 else -a / b**2


class xlogy(Primitive):
    """a * log(b), defined as 0 where a == 0 (unless b is nan), as torch.xlogy."""

    nargs = 2
    NUMBA = NumbaHelper(
        "xlogy",
        ("a", "b"),
        "    if a == 0.0 and not math.isnan(b):\n"
        "        return 0.0\n"
        "    return a * fast_log(b)\n",
    )
    LATEX = r"\operatorname{{xlogy}}\left({a0}, {a1}\right)"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        a, b = self.args
        if argindex == 1:  # torch: xlogy(a != 0, b)
            return sympy.Piecewise((0, sympy.Eq(a, 0)), (sympy.log(b), True))
        return ratio(a, b)  # torch: a / b, nan at a = b = 0


class clamp_min_st(Primitive):
    """max(v, lo) whose gradient passes straight through, as torch's clamp under no_grad."""

    nargs = 2
    NUMBA = NumbaHelper("clamp_min_st", ("v", "lo"), "    return lo if (v < lo or lo != lo) else v\n")  # nan bound: nan
    LATEX = r"\max\left({a0}, {a1}\right)"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Integer(1 if argindex == 1 else 0)


class clamp_min_ad(Primitive):
    """torch's autograd clamp_min(z, lo): nan in z or lo gives nan; the gradient in z is 1 where
    z >= lo (passing at equality) and 0 elsewhere, nan included. (A Piecewise cannot say this:
    SymPy folds its complementary conditions and loses the nan branch.)"""

    nargs = 2
    NUMBA = NumbaHelper("clamp_min_ad", ("z", "lo"), "    return lo if (z < lo or lo != lo) else z\n")
    LATEX = r"\max\left({a0}, {a1}\right)"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        z, lo = self.args
        return indicator(z >= lo) if argindex == 1 else indicator(z < lo)


class bce_term(Primitive):
    """-(y log x + (1 - y) log(1 - x)) with torch's clamps.

    Forward: each log is clamped at -100. Input gradient: (x - y) / max(x (1 - x), 1e-12).
    Target gradient: log(1 - x) - log(x) from the unclamped logs (+-inf at the ends), as torch.
    """

    nargs = 2
    NUMBA = NumbaHelper(
        "bce_term",
        ("x", "y"),
        "    log_x = fast_log(x)\n"
        f"    log_x = log_x if log_x > {BCE_LOG_FLOOR}.0 else {BCE_LOG_FLOOR}.0\n"
        "    log_1mx = fast_log1p(-x)\n"
        f"    log_1mx = log_1mx if log_1mx > {BCE_LOG_FLOOR}.0 else {BCE_LOG_FLOOR}.0\n"
        "    return -(y * log_x + (1.0 - y) * log_1mx)\n",
    )
    LATEX = r"\operatorname{{BCE}}\left({a0}, {a1}\right)"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x, y = self.args
        if argindex == 1:
            return (x - y) / sympy.Max(x * (1 - x), BCE_GRAD_EPS)
        return log1p(-x) - sympy.log(x)


class indicator(Primitive):
    """1 where the condition holds, else 0; its derivative is zero."""

    nargs = 1
    NUMBA = NumbaHelper("indicator", ("c",), "    return 1.0 if c else 0.0\n")
    LATEX = r"\mathbf{{1}}\left[{a0}\right]"

    def _eval_derivative(self, s: sympy.Symbol) -> sympy.Expr:
        return sympy.Integer(0)


class where(Primitive):
    """torch.where(c, a, b): selects in the forward, *masks by multiplication* in the backward.

    Autograd multiplies the masked upstream gradient (0) by the local derivative of the
    unselected branch, so 0 * inf = nan leaks through exactly where torch leaks it.
    Use ``Piecewise`` instead where torch's kernel selects the derivative.
    """

    nargs = 3
    NUMBA = NumbaHelper("where", ("c", "a", "b"), "    return a if c else b\n")
    LATEX = r"\begin{{cases}} {a1} & {a0} \\ {a2} & \text{{otherwise}} \end{{cases}}"

    def _eval_derivative(self, s: sympy.Symbol) -> sympy.Expr:
        c, a, b = self.args
        return indicator(c) * sympy.diff(a, s) + indicator(sympy.Not(c)) * sympy.diff(b, s)


class two_forms(Primitive):
    """One function in two algebraically equal forms: its value is v, its derivative that of d
    (the docs show v). torch computes some losses with one formula and their backward from
    another (bce_with_logits: the loss from log_sigmoid(x), the target gradient as
    log_sigmoid(-x) - pw log_sigmoid(x)); at infinities the two forms give different nan/inf, and
    this reproduces both. The gradient is still derived: sympy.diff of d."""

    nargs = 2
    NUMBA = NumbaHelper("two_forms", ("v", "d"), "    return v\n")

    def _eval_is_extended_real(self) -> Any:  # real where its value is: |two_forms(d)|' = sign(d) d'
        return self.args[0].is_extended_real
    LATEX = r"\left({a0}\right)"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Integer(0 if argindex == 1 else 1)


_LSE_BODY = (
    "    finite = m > -math.inf and m < math.inf\n"
    "    shift = m if finite else 0.0\n"  # all -inf (or an inf): the result is m itself
    "    total = shift + fast_log({terms})\n"
    "    return total if finite else m\n"
)


def stable_logsumexp(*args: sympy.Expr) -> sympy.Expr:
    """The helpers' formula as SymPy, for kernels that inline it (recurrences, where a helper call
    in the inner loop would stop vectorization), shifted by the maximum. The most negative float
    joins the maximum: when every term is -inf (absent) the shift stays finite and the result is
    log 0 = -inf (SymPy would decide a condition "maximum > -oo" True for real arguments)."""
    shift = sympy.Max(*args, sympy.Float(-sys.float_info.max))
    return shift + sympy.log(sympy.Add(*[sympy.exp(a - shift) for a in args]))


class logaddexp(Primitive):
    """log(exp(a) + exp(b)) shifted by the larger argument: no overflow, -inf when both are."""

    nargs = 2
    NUMBA = NumbaHelper(
        "logaddexp",
        ("a", "b"),
        "    m = a if a > b else b\n" + _LSE_BODY.format(terms="fast_exp(a - shift) + fast_exp(b - shift)"),
    )
    LATEX = r"\operatorname{{lse}}\left({a0}, {a1}\right)"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.exp(self.args[argindex - 1] - self)  # a softmax weight, in [0, 1]


class logsumexp3(Primitive):
    """log(exp(a) + exp(b) + exp(c)) shifted by the largest argument (recurrence bodies)."""

    nargs = 3
    NUMBA = NumbaHelper(
        "logsumexp3",
        ("a", "b", "c"),
        "    m = a if a > b else b\n"
        "    m = m if m > c else c\n"
        + _LSE_BODY.format(terms="fast_exp(a - shift) + fast_exp(b - shift) + fast_exp(c - shift)"),
    )
    LATEX = r"\operatorname{{lse}}\left({a0}, {a1}, {a2}\right)"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.exp(self.args[argindex - 1] - self)


# ---------------------------------------------------------------------------------------------
# norms over a feature axis (pair losses): torch's subgradients of linalg.vector_norm and minimum
# ---------------------------------------------------------------------------------------------

class abs_pow(Primitive):
    """|x|**p, a term of a p-norm. Derivative p |x|^(p-1) sign(x), and 0 at x == 0 where that
    would be 0 * inf (p < 1), as torch's norm backward masks it."""

    nargs = 2
    NUMBA = NumbaHelper("abs_pow", ("x", "p"), "    return abs(x) ** p\n")
    LATEX = r"\left|{a0}\right|^{{{a1}}}"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x, p = self.args
        if argindex == 2:
            raise ArgumentIndexError(self, argindex)
        return sympy.Piecewise((0, sympy.Eq(x, 0, evaluate=False)), (p * abs_pow(x, p - 1) * sympy.sign(x), True))


class norm_root(Primitive):
    """s**(1/p): the p-norm from the sum s of |x|^p. torch's norm backward divides by
    norm^(p-1) and masks norm == 0 to a zero gradient (linalg.vector_norm at 0 has gradient 0)."""

    nargs = 2
    NUMBA = NumbaHelper(
        "norm_root",
        ("s", "p"),
        "    if p == 2.0:\n"  # a constant in specialized kernels: the branch folds away
        "        return math.sqrt(s)\n"
        "    return s ** (1.0 / p)\n",
    )
    LATEX = r"\left({a0}\right)^{{1/{a1}}}"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        s, p = self.args
        if argindex == 2:
            raise ArgumentIndexError(self, argindex)
        return sympy.Piecewise((0, sympy.Eq(s, 0, evaluate=False)), (1 / (p * norm_root(s, p) ** (p - 1)), True))


class minimum(Primitive):
    """torch.minimum(a, b): nan if either is nan; at a tie the gradient is split, half to each
    argument (torch's derivatives.yaml: where(a == b, grad / 2, grad), masked where a > b)."""

    nargs = 2
    NUMBA = NumbaHelper("minimum", ("a", "b"), "    return a if (a < b or a != a) else b\n")
    LATEX = r"\min\left({a0}, {a1}\right)"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        a, b = self.args
        this, other = (a, b) if argindex == 1 else (b, a)
        return sympy.Piecewise((sympy.Rational(1, 2), sympy.Eq(a, b)), (0, this > other), (1, True))


class peak(Primitive):
    """1 where the term t is the maximum m (or is nan), else 0: which terms of a maximum share its
    gradient (torch's amax / norm-inf backward splits it equally among them). Derivative 0."""

    nargs = 2
    NUMBA = NumbaHelper("peak", ("t", "m"), "    return 1.0 if (t == m or t != t) else 0.0\n")
    LATEX = r"\mathbf{{1}}\left[{a0} = {a1}\right]"

    def _eval_derivative(self, s: sympy.Symbol) -> sympy.Expr:
        return sympy.Integer(0)


PRIMITIVES: tuple[type[Primitive], ...] = (
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
    sigmoid_of,
    softplus,
    softplus_of,
    two_forms,
    where,
    xlogy,
)
