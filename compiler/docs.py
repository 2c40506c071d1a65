"""Lowering for the documentation: each loss as LaTeX strings (formulas before CSE).

Formulas are printed by ``DocPrinter``: SymPy's LaTeX printer with torch's conventional short
names for the arguments (x for input, y for target, ...), sums and selections that take
brackets only where they need them, and short floats. A formula wider than the line is
broken at the signs of its outer sum (``_layout``), judged by an estimate of its printed
width (``tex_width``); nothing here depends on TeX being installed, so the output is the
same on every machine.
"""
from __future__ import annotations

import inspect
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE

from .derive import GRAD_CLASS, Variant, reductions, variants
from .lang import (
    CLASS,
    CLASSES,
    FEATURE,
    OTHER_CLASS,
    Auxiliary,
    BatchSize,
    ClassSum,
    ClassTarget,
    Count,
    Denominator,
    Flag,
    Int,
    Legacy,
    OptionalTensor,
    Real,
    Reduction,
    SumOf,
    TargetWeightSum,
    Tensor,
)
from .load import LoadedSpec
from .primitives import Primitive


@dataclass(frozen=True)
class DocParam:
    name: str
    symbol: str  # LaTeX math (without $), or "" for parameters that never appear in a formula
    kind: str
    default: str
    doc: str


@dataclass(frozen=True)
class DocEquation:
    lhs: str
    lines: tuple[str, ...]  # the right-hand side, one display line each
    # a line the layout could not bring under the page's width: printed scaled to the width
    scaled: bool = False


@dataclass(frozen=True)
class DocVariant:
    title: str  # "" when the loss has a single variant
    # named row quantities (if any), the loss, then one derived gradient per differentiable tensor
    equations: tuple[DocEquation, ...]

    @property
    def scaled(self) -> bool:
        return any(eq.scaled for eq in self.equations)

    @property
    def named(self) -> bool:
        """Whether the equations start with named row quantities (rho_1, ...)."""
        return any(eq.lhs.startswith(r"\rho_") for eq in self.equations)


@dataclass(frozen=True)
class DocPrimitive:
    sample: str  # LaTeX math, e.g. \sigma\left(z\right)
    doc: str
    derivatives: tuple[tuple[str, str], ...]  # (argument, its nonzero derivative), LaTeX math


@dataclass(frozen=True)
class DocPage:
    name: str
    title: str  # the name, escaped for TeX
    spec_path: str
    torch_name: str
    summary: str
    row: bool  # a row loss (one loss per sample, over classes) rather than an elementwise one
    scores: str  # row losses: the symbol of input, the class scores
    kronecker: str  # "" or a sentence (LaTeX) on the Kronecker delta the formulas use
    params: tuple[DocParam, ...]
    differentiable: tuple[str, ...]
    not_differentiable: tuple[str, ...]
    reductions: tuple[tuple[str, str], ...]
    variants: tuple[DocVariant, ...]
    primitives: tuple[DocPrimitive, ...]
    notes: tuple[str, ...]
    # recurrence losses (compiler/recurrence.py): the forward program, what the compiler derived
    # from it, and the array under torch's log_softmax convention ('' when none)
    recurrence: tuple[DocEquation, ...] = ()
    adjoint: tuple[DocEquation, ...] = ()
    convention: str = ""
    features: bool = False  # a pair loss: one value per row, over the features (compiler/pair.py)
    float32_arithmetic: bool = False  # float32 data computed in float32 (lang.Loss.float32_arithmetic)


_TEXT_ESCAPES = (
    ("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("$", r"\$"),
    ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}"),
    ("<", r"\textless{}"), (">", r"\textgreater{}"), ("|", r"\textbar{}"),
    # characters pdflatex's default (OT1) setup cannot typeset
    ("\u00ab", "<<"), ("\u00bb", ">>"), ("\u2212", "-"), ("\u201a", ","), ("\u201e", ",,"),
    ("\u2264", r"$\leq$"), ("\u2265", r"$\geq$"), ("\u2260", r"$\neq$"), ("\u2248", r"$\approx$"),
    ("\u221e", r"$\infty$"), ("\u2192", r"$\to$"), ("\u2190", r"$\leftarrow$"), ("\u2208", r"$\in$"),
    ("\u2211", r"$\sum$"), ("\u2202", r"$\partial$"), ("\u221a", r"$\surd$"), ("\u2213", r"$\mp$"),
    ("\u22c5", r"$\cdot$"), ("\u2209", r"$\notin$"), ("\u2261", r"$\equiv$"),
)
_ESCAPE = re.compile("|".join(re.escape(char) for char, _ in _TEXT_ESCAPES))
# Beyond ASCII, what pdflatex's default setup typesets as it is (tested with TeX Live 2022).
_TYPESET = set(map(chr, range(0xA1, 0x100))) - set("\u00ab\u00bb\u00d0\u00de\u00f0\u00fe") | set(
    "\u2013\u2014\u2018\u2019\u201c\u201d\u2022\u2026\u2020\u2021\u2030")
_GREEK_SMALL = {
    "ALPHA", "BETA", "GAMMA", "DELTA", "EPSILON", "ZETA", "ETA", "THETA", "IOTA", "KAPPA", "LAMDA", "MU", "NU",
    "XI", "OMICRON", "PI", "RHO", "FINAL SIGMA", "SIGMA", "TAU", "UPSILON", "PHI", "CHI", "PSI", "OMEGA",
}
_GREEK_CAPITALS = {"GAMMA", "DELTA", "THETA", "LAMDA", "XI", "PI", "SIGMA", "UPSILON", "PHI", "PSI", "OMEGA"}


def _unicode_tex(char: str) -> str:
    """A character outside what pdflatex typesets by default: its Greek letter in math, else its code."""
    name = unicodedata.name(char, "")
    small, capital = "GREEK SMALL LETTER ", "GREEK CAPITAL LETTER "
    if name.startswith(small) and name[len(small):] in _GREEK_SMALL:
        letter = name[len(small):]
        command = {"LAMDA": r"\lambda", "FINAL SIGMA": r"\varsigma", "OMICRON": "o"}.get(letter, "\\" + letter.lower())
        return f"${command}$"
    if name.startswith(capital) and name[len(capital):] in _GREEK_CAPITALS:
        letter = name[len(capital):].replace("LAMDA", "LAMBDA").capitalize()
        return f"$\\{letter}$"
    return f"[U+{ord(char):04X}]"


def tex_escape(text: str) -> str:
    """Plain text for TeX's text mode: specials escaped, and characters pdflatex's default
    (OT1) fonts lack replaced, so that no spec's wording can stop the document compiling."""
    table = dict(_TEXT_ESCAPES)
    text = _ESCAPE.sub(lambda m: table[m.group(0)], text)
    return "".join(c if c < "\u0080" or c in _TYPESET else _unicode_tex(c) for c in text)


# ---------------------------------------------------------------------------------------------
# Names

# torch's conventional letters for the arguments that recur across losses (its documentation
# writes x, y, w, p, margin as m, ...). An argument not listed here, or whose letter would clash
# with another argument or with a symbol of the formulas, is printed by its own name.
SHORT_NAMES: dict[str, str] = {
    "input": "x",
    "input1": "x_{1}",
    "input2": "x_{2}",
    "target": "y",
    "weight": "w",
    "pos_weight": "p",
    "var": r"\sigma^{2}",
    "margin": "m",
    "delta": r"\delta",
    "beta": r"\beta",
    "eps": r"\epsilon",
    "label_smoothing": r"\varepsilon",
}
# The class indices and class count of row losses (compiler.lang, compiler.derive).
INDEX_NAMES: dict[sympy.Symbol, str] = {CLASS: "c", OTHER_CLASS: "c'", GRAD_CLASS: "k", CLASSES: "C"}
# Letters the page's prose and reduction rules use: \ell_i, i, n, B, e, \pi.
_PROSE_GLYPHS = frozenset({r"\ell", "i", "n", "B", "e", r"\pi", "S", "L"})
# Control words of a primitive's LaTeX template that are structure, not glyphs.
_STRUCTURE_WORDS = frozenset({
    r"\operatorname", r"\left", r"\right", r"\frac", r"\begin", r"\end", r"\text", r"\mathbb",
    r"\mathbf", r"\mathrm", r"\mathit", r"\max", r"\min", r"\log", r"\exp",
})


def _glyph(latex: str) -> str:
    """What a name looks like, for clashes: without superscripts and primes (sigma^2 is a sigma,
    c' a c; x_1 and x_2 differ); \\varepsilon is \\epsilon."""
    base = re.sub(r"\^\{[^{}]*\}|'", "", latex)
    return base.replace(r"\var", "\\")


def _fallback_name(name: str) -> str:
    return r"\mathit{" + name.replace("_", r"\_") + "}"


def _symbol_params(loaded: LoadedSpec) -> list[str]:
    """Parameters that appear in formulas, in signature order."""
    return [p.name for p in loaded.spec.params if isinstance(p, (Tensor, OptionalTensor, ClassTarget, Auxiliary, Real))]


def _reserved_glyphs(vs: Sequence[Variant]) -> set[str]:
    """Glyphs the formulas use besides the arguments: class indices, Kronecker deltas, primitives."""
    reserved = set(_PROSE_GLYPHS)
    for expr in _expressions(vs):
        if expr.has(sympy.KroneckerDelta):
            reserved.add(r"\delta")
        for symbol in expr.atoms(sympy.Symbol) & set(INDEX_NAMES):
            reserved.add(_glyph(INDEX_NAMES[symbol]))
        for primitive in expr.atoms(Primitive):
            reserved.update(set(re.findall(r"\\[A-Za-z]+", type(primitive).LATEX)) - _STRUCTURE_WORDS)
    return reserved


def argument_names(loaded: LoadedSpec, vs: Sequence[Variant]) -> dict[str, str]:
    """The LaTeX name of every argument that appears in the formulas of one loss."""
    taken = _reserved_glyphs(vs)
    names: dict[str, str] = {}
    declared = {p.name: str(getattr(p, "symbol", "") or "") for p in loaded.spec.params}
    for name in _symbol_params(loaded):
        short = declared[name] or SHORT_NAMES.get(name)  # a spec's own symbol, if lang ever offers one
        if short is not None and _glyph(short) not in taken:
            names[name] = short
            taken.add(_glyph(short))
        else:
            names[name] = _fallback_name(name)
    return names


def _symbol_map(variant: Variant, names: Mapping[str, str]) -> dict[sympy.Basic, str]:
    table: dict[sympy.Basic, str] = dict(INDEX_NAMES)
    for name, symbol in variant.symbols.items():
        latex = names.get(name, _fallback_name(name))
        table[symbol.label if isinstance(symbol, sympy.IndexedBase) else symbol] = latex
    return table


def _expressions(vs: Iterable[Variant]) -> Iterable[sympy.Expr]:
    for v in vs:
        yield v.loss
        for _, gradient in v.gradients:
            yield gradient


# ---------------------------------------------------------------------------------------------
# Printing


def _is_big(expr: sympy.Basic) -> bool:
    """A factor printed after the others and outside any fraction: a sum over the classes, a
    selection, or a sum or power of those."""
    if isinstance(expr, (ClassSum, sympy.Piecewise)):
        return True
    if isinstance(expr, sympy.Add):
        return bool(expr.has(ClassSum, sympy.Piecewise))
    if isinstance(expr, sympy.Pow):
        return bool(expr.exp.is_positive) and _is_big(expr.base)
    return False


def _is_sum_or_power_of_sum(expr: sympy.Basic) -> bool:
    if isinstance(expr, sympy.Pow):
        return isinstance(expr.base, sympy.Add) and bool(expr.exp.is_Integer) and bool(expr.exp > 0)
    return isinstance(expr, sympy.Add)


def _big_rank(expr: sympy.Basic) -> int:
    """Order of the big factors: sums of terms, then powers, then class sums, selections last."""
    if isinstance(expr, sympy.Add):
        return 0
    if isinstance(expr, sympy.Pow):
        return 1
    if isinstance(expr, ClassSum):
        return 2
    return 3


class DocPrinter(LatexPrinter):  # type: ignore[misc]
    """SymPy's LaTeX printer, tuned for the loss pages.

    - a sum over the classes takes brackets around its body only for a sum of terms, and is
      bracketed itself only when something follows it in a product;
    - a selection (cases) is not bracketed when it ends a product: its brace delimits it;
    - in a product, sums over classes and selections come last and outside the fraction
      (w_y / C \\sum_c ... instead of a fraction bar over the whole sum);
    - floats print with six significant digits, 10^{-12} rather than 1.0 \\cdot 10^{-12}.
    Primitives print by their own ``_latex`` (compiler.primitives).
    """

    def __init__(self, names: Mapping[sympy.Basic, str]) -> None:
        super().__init__({"symbol_names": dict(names), "ln_notation": False})

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if isinstance(expr, ClassSum):  # ahead of ClassSum._latex, which brackets every body
            return self._print_class_sum(expr)
        return str(super()._print(expr, **kwargs))

    def class_sum_prefix(self, index: sympy.Symbol) -> str:
        upper = "D-1" if index == FEATURE else "C-1"  # the features of a pair loss's row
        return rf"\sum_{{{self._print(index)}=0}}^{{{upper}}}"

    def _print_class_sum(self, expr: ClassSum) -> str:
        body = self._print(expr.body)
        if isinstance(expr.body, sympy.Add) or (
            isinstance(expr.body, sympy.Mul) and expr.body.could_extract_minus_sign()
        ):
            body = rf"\left({body}\right)"
        return f"{self.class_sum_prefix(expr.index)} {body}"

    def parenthesize(self, item: Any, level: int, is_neg: bool = False, strict: bool = False) -> str:
        if isinstance(item, ClassSum):  # binds like a product, as SymPy's Sum
            text = self._print(item)
            return rf"\left({text}\right)" if PRECEDENCE["Mul"] <= level else text
        return str(super().parenthesize(item, level, is_neg, strict))

    def _needs_mul_brackets(self, expr: Any, first: bool = False, last: bool = False) -> bool:
        if isinstance(expr, ClassSum):
            return not last
        if isinstance(expr, sympy.Piecewise) and last:
            return False
        return bool(super()._needs_mul_brackets(expr, first=first, last=last))

    def split_product(self, expr: sympy.Expr, every_sum: bool = False) -> tuple[str, list[sympy.Expr]]:
        """A product as (printed small factors, big factors in print order); with ``every_sum``,
        for line breaking, every sum of terms in the numerator counts as big."""

        def big_factor(f: sympy.Expr) -> bool:
            return _is_big(f) or (every_sum and _is_sum_or_power_of_sum(f))

        factors = sympy.Mul.make_args(expr)
        big = sorted((f for f in factors if big_factor(f)), key=lambda f: (_big_rank(f), sympy.default_sort_key(f)))
        small = sympy.Mul(*[f for f in factors if not big_factor(f)])
        if small == 1:
            return "", big
        if small == -1:
            return "-", big
        head = self._print(small)
        if isinstance(small, sympy.Add):
            head = rf"\left({head}\right)"
        return head, big

    def print_big_factor(self, factor: sympy.Expr, last: bool) -> str:
        text = self._print(factor)
        if isinstance(factor, sympy.Add) or self._needs_mul_brackets(factor, first=False, last=last):
            text = rf"\left({text}\right)"
        return text

    def _print_Mul(self, expr: sympy.Mul) -> str:
        if not isinstance(expr, sympy.Mul) or not any(_is_big(f) for f in expr.args):
            return str(super()._print_Mul(expr))  # SymPy's _print_Pow prints 1/x here too
        head, big = self.split_product(expr)
        parts = [head] if head else []
        parts += [self.print_big_factor(f, last=i == len(big) - 1) for i, f in enumerate(big)]
        return " ".join(parts)

    def _print_Float(self, expr: sympy.Float) -> str:
        text = f"{float(expr):.6g}"
        if "e" not in text:
            return text
        mantissa, exponent = text.split("e")
        power = f"10^{{{int(exponent)}}}"
        if mantissa in ("1", "-1"):
            return mantissa[:-1] + power
        return rf"{mantissa} \cdot {power}"


def _flatten_selections(expr: sympy.Expr) -> sympy.Expr:
    """Piecewise((a, c), (Piecewise((b, d), (e, True)), True)) as Piecewise((a, c), (b, d), (e, True)):
    the same function, one brace instead of two."""

    def flat(pw: sympy.Piecewise) -> sympy.Expr:
        pairs: list[tuple[sympy.Expr, sympy.Basic]] = []
        for value, condition in pw.args:
            if condition == sympy.true and isinstance(value, sympy.Piecewise):
                pairs.extend((v, c) for v, c in value.args)
            else:
                pairs.append((value, condition))
        return sympy.Piecewise(*pairs, evaluate=False)

    return expr.replace(lambda e: isinstance(e, sympy.Piecewise), flat)


# ---------------------------------------------------------------------------------------------
# Width estimate and line breaking

# The right-hand side of a display line may be this wide (pt, 10pt type): the text is 500pt
# wide, the left-hand sides take up to ~50pt.
LINE_BUDGET = 400.0
CONTINUATION_INDENT = 20.0  # \quad and the operator's own space
MIN_BUDGET = 150.0  # nested deep, a line may overfill rather than shred into tiny pieces
SHORT_FACTOR = 120.0  # a factor of a product this narrow is never broken

_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[{}^_&]|[^\s\\{}^_&]")
_WORD_WIDTHS = {  # pt at 10pt; control words that print a glyph or a space
    r"\cdot": 7.8, r"\geq": 13.3, r"\leq": 13.3, r"\neq": 13.3, r"\ne": 13.3, r"\ge": 13.3, r"\le": 13.3,
    r"\infty": 10.0, r"\partial": 5.8, r"\ell": 4.2, r"\quad": 10.0, r"\qquad": 20.0, r"\sum": 14.4,
    r"\wedge": 12.2, r"\vee": 12.2, r"\neg": 6.7, r"\not": 0.0, r"\in": 12.2,
}
_OPERATOR_WIDTH = 5.0  # per letter of \log, \max, \operatorname{...}
_SPACES = {r"\:": 2.2, r"\,": 1.7, r"\;": 2.8, r"\!": -1.7, r"\ ": 3.3}
_BINARY = {"+": 12.2, "-": 12.2, "*": 12.2}
_RELATION = {"=": 13.3, "<": 13.3, ">": 13.3}
_NARROW = {"(": 3.9, ")": 3.9, "[": 2.8, "]": 2.8, ",": 4.4, "|": 2.8, ".": 2.8, "'": 2.8, "/": 5.0}


def _parse(tex: str) -> list[Any]:
    """Tokens, with each {...} group as a nested list."""
    stack: list[list[Any]] = [[]]
    for token in _TOKEN.findall(tex):
        if token == "{":
            stack.append([])
        elif token == "}":
            if len(stack) > 1:
                group = stack.pop()
                stack[-1].append(group)
        else:
            stack[-1].append(token)
    while len(stack) > 1:
        group = stack.pop()
        stack[-1].append(group)
    return stack[0]


def _text_width(items: Any, per_char: float) -> float:
    if isinstance(items, list):
        return sum(_text_width(i, per_char) for i in items)
    return per_char * (0 if items.startswith("\\") and len(items) > 2 else 1)


def _measure(items: list[Any], scale: float, display: bool) -> float:
    """Estimated width in pt of a parsed math list; scale 1 (text), 0.7 (script), 0.5."""
    inner = 0.7 if scale >= 1 else 0.5
    total = 0.0
    i = 0
    last_script = 0.0

    def argument(j: int) -> tuple[Any, int]:
        return (items[j], j + 1) if j < len(items) else ([], j)

    def width(item: Any, s: float, d: bool) -> float:
        return _measure(item if isinstance(item, list) else [item], s, d)

    while i < len(items):
        token = items[i]
        i += 1
        script = 0.0
        if isinstance(token, list):
            total += _measure(token, scale, display)
        elif token in ("^", "_"):
            arg, i = argument(i)
            script = width(arg, inner, False)
            total += max(0.0, script - last_script)  # a sub- and a superscript stack
        elif token == r"\frac":
            numerator, i = argument(i)
            denominator, i = argument(i)
            s = scale if display else inner
            total += max(width(numerator, s, False), width(denominator, s, False)) + 2.4 * scale
        elif token == r"\sum" and display:
            limits = []
            while i < len(items) and items[i] in ("^", "_"):
                arg, i = argument(i + 1)
                limits.append(width(arg, inner, False))
            total += max([14.4 * scale] + limits) + 1.7 * scale
        elif token == r"\begin":
            environment, i = argument(i)
            if environment == list("array"):  # [t]{@{}l@{}}: placement and columns
                while i < len(items) and items[i] in ("[", "t", "b", "c", "]"):
                    i += 1
                _, i = argument(i)
            depth, start = 1, i
            while i < len(items) and depth:
                depth += {r"\begin": 1, r"\end": -1}.get(items[i] if isinstance(items[i], str) else "", 0)
                i += 1
            body = items[start:i - 1]
            i += 1  # the environment's name after \end
            brace = 8.9 if environment == list("cases") else 0.0
            total += _measure_cases(body, scale) + brace * scale
        elif token in (r"\left", r"\right"):
            delimiter, i = argument(i)
            total += (1.2 if delimiter == "." else 5.5) * scale
        elif token in (r"\vphantom", r"\phantom"):
            _, i = argument(i)
        elif token in (r"\text", r"\textrm", r"\mathrm", r"\operatorname"):
            arg, i = argument(i)
            total += _text_width(arg, _OPERATOR_WIDTH * scale) + (3.4 * scale if token == r"\operatorname" else 0)
        elif token in (r"\mathit", r"\mathbf", r"\mathbb", r"\mathcal", r"\boldsymbol"):
            arg, i = argument(i)
            total += _text_width(arg, 5.3 * scale)
        elif token in _WORD_WIDTHS:
            total += _WORD_WIDTHS[token] * scale
        elif token in _SPACES:
            total += _SPACES[token] * scale
        elif token.startswith("\\") and token[1:].isalpha():
            # \log, \max, \exp, ...: an operator name; \sigma, \delta, ...: one Greek letter
            word = token[1:]
            total += (_OPERATOR_WIDTH * len(word) + 1.7) * scale if word in ("log", "max", "min", "exp", "sign") else 6.0 * scale
        elif token in _BINARY:
            total += _BINARY[token] * scale
        elif token in _RELATION:
            total += _RELATION[token] * scale
        elif token in _NARROW:
            total += _NARROW[token] * scale
        elif token.startswith("\\"):
            total += 5.0 * scale
        else:
            total += (7.5 if token.isupper() else 5.6) * scale
        last_script = script
    return total


def _measure_cases(body: list[Any], scale: float) -> float:
    """cases: two columns (value, condition) a \\quad apart; cells are in text style."""
    rows: list[list[list[Any]]] = [[[]]]
    depth = 0  # inside a nested environment, & and \\ are its own
    for token in body:
        if depth == 0 and token == "\\\\":
            rows.append([[]])
        elif depth == 0 and token == "&":
            rows[-1].append([])
        else:
            depth += {r"\begin": 1, r"\end": -1}.get(token if isinstance(token, str) else "", 0)
            rows[-1][-1].append(token)
    columns: dict[int, float] = {}
    for row in rows:
        for index, cell in enumerate(row):
            columns[index] = max(columns.get(index, 0.0), _measure(cell, scale, False))
    return sum(columns.values()) + 10.0 * scale * max(0, len(columns) - 1)


def tex_width(tex: str) -> float:
    """Estimated width (pt, 10pt type) of display math: the line breaker's measure."""
    return _measure(_parse(tex), 1.0, True)


def _signed_terms(expr: sympy.Add, printer: DocPrinter) -> list[tuple[str, sympy.Expr]]:
    """The terms of a sum in print order, each with the sign it is printed with."""
    result: list[tuple[str, sympy.Expr]] = []
    for index, term in enumerate(printer._as_ordered_terms(expr)):
        if index == 0:
            result.append(("", term))
        elif term.could_extract_minus_sign():
            result.append(("-", -term))
        else:
            result.append(("+", term))
    return result


def _layout(expr: sympy.Expr, printer: DocPrinter, budget: float) -> list[str]:
    """The printed expression as display lines of about ``budget`` pt each; continuation lines
    begin with their operator. Sums are broken at their signs: at the top, inside the bracketed
    factors of a product or a power (\\left( ... \\right. across the lines, sized by a phantom),
    inside a sum over the classes, and inside the values of a selection."""
    text = printer._print(expr)
    budget = max(budget, MIN_BUDGET)
    if tex_width(text) <= budget:
        return [text]
    if isinstance(expr, sympy.Add):
        return _layout_sum(expr, printer, budget)
    if isinstance(expr, sympy.Mul):
        lines = _layout_product(expr, printer, budget)
        return lines if len(lines) > 1 or lines[0] != text else [text]
    if isinstance(expr, sympy.Pow) and _is_sum_or_power_of_sum(expr):
        inner = _layout_sum(expr.base, printer, budget - 20.0)
        return _bracket_lines("", inner, "^{" + printer._print(expr.exp) + "}") if len(inner) > 1 else [text]
    if isinstance(expr, sympy.Piecewise):
        return [_layout_selection(expr, printer, budget)]
    if isinstance(expr, ClassSum):
        prefix = printer.class_sum_prefix(expr.index)
        if isinstance(expr.body, sympy.Add):
            inner = _layout_sum(expr.body, printer, budget - tex_width(prefix) - 10.0)
            return _bracket_lines(prefix, inner) if len(inner) > 1 else [text]
        lines = _layout(expr.body, printer, budget - tex_width(prefix))
        return [f"{prefix} {lines[0]}"] + lines[1:]
    return [text]


def _layout_product(expr: sympy.Mul, printer: DocPrinter, budget: float) -> list[str]:
    """The small factors (and fraction), then each big factor, inline while it fits, else laid
    out itself and continued on the following lines."""
    head, big = printer.split_product(expr, every_sum=True)
    lines = [head]
    for index, factor in enumerate(big):
        last = index == len(big) - 1
        text = printer.print_big_factor(factor, last)
        room = budget - (CONTINUATION_INDENT if len(lines) > 1 else 0.0)
        # a short factor stays whole even where it overfills the line a little
        if tex_width(f"{lines[-1]} {text}") <= room or tex_width(text) <= SHORT_FACTOR:
            lines[-1] = f"{lines[-1]} {text}".strip()
            continue
        room -= tex_width(lines[-1])
        if isinstance(factor, sympy.Add):
            inner = _layout_sum(factor, printer, room - 10.0)
            piece = _bracket_lines("", inner) if len(inner) > 1 else [text]
        else:
            inner = _layout(factor, printer, room)
            if text.startswith(r"\left(") and not printer._print(factor).startswith(r"\left("):
                piece = _bracket_lines("", inner) if len(inner) > 1 else [text]
            else:
                piece = inner
        lines[-1] = f"{lines[-1]} {piece[0]}".strip()
        lines.extend(piece[1:])
    return lines


def _layout_selection(expr: sympy.Piecewise, printer: DocPrinter, budget: float) -> str:
    """cases whose values may take several lines each (an array aligned at its first line);
    as SymPy prints a Piecewise otherwise."""
    conditions = []
    for index, (_, condition) in enumerate(expr.args):
        last = index == len(expr.args) - 1
        conditions.append(r"\text{otherwise}" if last and condition == sympy.true
                          else r"\text{for}\: " + printer._print(condition))
    room = budget - 8.9 - 10.0 - max(tex_width(c) for c in conditions)
    rows = []
    for (value, _), condition in zip(expr.args, conditions):
        lines = _layout(value, printer, room)
        if len(lines) == 1:
            cell = lines[0]
        else:
            cell = r"\begin{array}[t]{@{}l@{}}" + r" \\ \quad ".join(lines) + r"\end{array}"
        rows.append(f"{cell} & {condition}")
    return r"\begin{cases} " + r" \\".join(rows) + r" \end{cases}"


def _layout_sum(expr: sympy.Add, printer: DocPrinter, budget: float) -> list[str]:
    budget = max(budget, MIN_BUDGET)
    pieces: list[str] = []
    for sign, term in _signed_terms(expr, printer):
        term_text = printer._print(term)
        if printer._needs_add_brackets(term):
            term_text = rf"\left({term_text}\right)"
        first_budget = budget - (CONTINUATION_INDENT if sign else 0.0)
        if tex_width(term_text) > first_budget and not printer._needs_add_brackets(term):
            term_lines = _layout(term, printer, first_budget)
        else:
            term_lines = [term_text]
        term_lines[0] = f"{sign} {term_lines[0]}" if sign else term_lines[0]
        pieces.extend(term_lines)
    lines: list[str] = []
    for piece in pieces:
        room = budget - (CONTINUATION_INDENT if lines else 0.0)
        if lines and piece[:1] in "+-" and tex_width(lines[-1] + " " + piece) <= room:
            lines[-1] = f"{lines[-1]} {piece}"
        else:
            lines.append(piece)
    return [line if index == 0 or line[:1] not in "+-" else "{} " + line for index, line in enumerate(lines)]


def _bracket_lines(head: str, lines: list[str], tail: str = "") -> list[str]:
    """head ( lines )tail across display lines: \\left( ... \\right. on the first, \\left. ... \\right)
    on the last, both sized by a phantom of every line."""
    phantom = r"\vphantom{" + " ".join(lines) + "}"
    first = rf"{head} \left({phantom} {lines[0]} \right.".lstrip()
    last = rf"\left.{phantom} {lines[-1]} \right){tail}"
    return [first] + lines[1:-1] + [last]


# ---------------------------------------------------------------------------------------------
# The page


def _denominator_tex(rule: Denominator | None, names: Mapping[str, str]) -> str:
    def name(tensor: str) -> str:
        return names.get(tensor, _fallback_name(tensor))

    if rule is None:
        return r"L = \sum_i \ell_i"
    if isinstance(rule, Count):
        return r"L = \frac{1}{n}\sum_i \ell_i \quad (n = \text{the number of values } \ell_i)"
    if isinstance(rule, SumOf):
        w = name(rule.tensor)
        return (rf"L = \sum_i \ell_i \Big/ \sum_i {{{w}}}_i \quad (\text{{by the number of elements when }}"
                rf"\texttt{{{tex_escape(rule.tensor)}}}\text{{ is None}})")
    if isinstance(rule, BatchSize):
        return (r"L = \frac{1}{B}\sum_i \ell_i \quad (B = \text{size of dimension 0 of }"
                rf"\texttt{{{tex_escape(rule.tensor)}}})")
    if isinstance(rule, TargetWeightSum):
        w = name(rule.weight)
        return (rf"L = \sum_i \ell_i \Big/ \sum_{{i \text{{ not ignored}}}} {{{w}}}_{{y_i}}"
                r" \quad (\text{the number of rows when the target is probabilities})")
    # a rule this page does not know yet: its name, so that the document still builds
    return rf"L = \frac{{1}}{{D}}\sum_i \ell_i \quad (D\text{{: {tex_escape(type(rule).__name__)}}})"


def _value(value: object) -> str:
    return tex_escape(str(value))


def _variant_title(variant: Variant, loaded: LoadedSpec, names: Mapping[str, str]) -> str:
    params = {p.name: p for p in loaded.spec.params if not isinstance(p, Reduction)}
    switches = {p.probabilities_switch: p.name for p in loaded.spec.params
                if isinstance(p, ClassTarget) and p.probabilities_switch}
    parts = []
    for name, value in variant.flags:
        if name in switches:
            kind = "class probabilities" if value else "class indices"
            parts.append(rf"\texttt{{{tex_escape(switches[name])}}} holds {kind}")
        else:
            parts.append(rf"\texttt{{{tex_escape(name)}={_value(value)}}}")
    for name, given in variant.present:
        if isinstance(params.get(name), Real):
            relation = r"\neq" if given else "="
            parts.append(f"${names[name]} {relation} 0$")
        else:
            parts.append(rf"\texttt{{{tex_escape(name)}}} given" if given else rf"\texttt{{{tex_escape(name)}=None}}")
    return ", ".join(parts)


def _kind(p: object) -> str:
    if isinstance(p, Tensor):
        return "tensor" if p.differentiable else "tensor (no gradient)"
    kinds: dict[type, str] = {OptionalTensor: "optional tensor", Real: "real", Flag: "flag", Legacy: "deprecated",
                              Reduction: "reduction", ClassTarget: "class target", Int: "integer", Auxiliary: "computed"}
    return kinds.get(type(p), tex_escape(type(p).__name__.lower()))


def _default(p: object) -> str:
    if isinstance(p, (Tensor, ClassTarget)):
        return "required"
    if isinstance(p, Auxiliary):
        return ""
    if isinstance(p, (OptionalTensor, Legacy)):
        return "None"
    return repr(getattr(p, "default"))


def _param_doc(p: object) -> str:
    doc = str(getattr(p, "doc", ""))
    if isinstance(p, Legacy):
        doc = doc or "torch's legacy form of reduction"
    if isinstance(p, Reduction):
        doc = doc or "'none', 'sum', 'mean' or a further rule below; see Reduction"
    if isinstance(p, Flag) and tuple(p.values) != (False, True) and not doc:
        doc = f"one of {', '.join(map(str, p.values))}"
    return tex_escape(doc)


def _primitive_doc(cls: type[Primitive]) -> DocPrimitive:
    """A primitive on plain arguments (named as its Numba helper's), its docstring's first
    paragraph, and its hand-written derivative in each argument where that is not zero."""
    arguments = [sympy.Symbol(n, real=True) for n in cls.NUMBA.params]
    names = {a: (a.name if len(a.name) == 1 else _fallback_name(a.name)) for a in arguments}
    printer = DocPrinter(names)
    text = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]
    text = re.sub(r"\*([^*\s][^*]*)\*", r"\1", " ".join(text.split()).replace("``", ""))
    sample = cls(*arguments)
    derivatives = []
    for argument in arguments:
        derivative = sympy.diff(sample, argument)
        if derivative != 0:
            derivatives.append((names[argument], printer._print(_flatten_selections(derivative))))
    return DocPrimitive(printer._print(sample), tex_escape(text), tuple(derivatives))


# a display line this much wider than the budget makes a variant's page name its row quantities
OVERFLOW_PT = 30.0


def _equations(variant: Variant, names: Mapping[str, str]) -> tuple[DocEquation, ...]:
    table = _symbol_map(variant, names)
    lhs = [r"\ell"]
    for name, _ in variant.gradients:
        base = variant.symbols[name]
        wrt = names[name] if not isinstance(base, sympy.IndexedBase) else f"{{{names[name]}}}_{{k}}"
        lhs.append(r"\frac{\partial \ell}{\partial " + wrt + "}")
    exprs = [variant.loss] + [gradient for _, gradient in variant.gradients]
    result = _laid_out(lhs, exprs, DocPrinter(table))
    if not any(eq.scaled for eq in result):
        return result
    # too wide to read: each quantity computed once per row (a sum or maximum over the classes
    # or features, not at the gradient's k) gets a name, defined ahead of the formulas
    definitions, exprs = _row_quantities(exprs)
    table.update({symbol: rf"\rho_{{{index + 1}}}" for index, (symbol, _) in enumerate(definitions)})
    printer = DocPrinter(table)
    named = _laid_out([rf"\rho_{{{index + 1}}}" for index in range(len(definitions))], [d for _, d in definitions], printer)
    return named + _laid_out(lhs, exprs, printer)


def _laid_out(lhs: Sequence[str], exprs: Sequence[sympy.Expr], printer: DocPrinter) -> tuple[DocEquation, ...]:
    result = []
    for left, expr in zip(lhs, exprs):
        lines = tuple(_layout(_flatten_selections(expr), printer, LINE_BUDGET))
        result.append(DocEquation(left, lines, any(tex_width(line) > LINE_BUDGET + OVERFLOW_PT for line in lines)))
    return tuple(result)


def _row_quantities(exprs: list[sympy.Expr]) -> tuple[list[tuple[sympy.Symbol, sympy.Expr]], list[sympy.Expr]]:
    """([(name, definition)], exprs with each row quantity replaced by its name): the innermost
    first, so that a definition reads the names defined before it."""
    from .lang import ClassMax

    definitions: list[tuple[sympy.Symbol, sympy.Expr]] = []
    while True:
        reductions = [n for e in exprs for n in sympy.preorder_traversal(e) if isinstance(n, (ClassSum, ClassMax))]
        indices = {n.index for n in reductions} | {GRAD_CLASS}  # a quantity of the row reads none of them
        found = {n for n in reductions if not n.free_symbols & indices and not n.body.has(ClassSum, ClassMax)}
        if not found:
            return definitions, exprs
        named: dict[sympy.Expr, sympy.Symbol] = {}
        for node in sorted(found, key=sympy.default_sort_key):
            # one name per quantity, whatever its bound index was renamed to by differentiation
            bound = FEATURE if any(n.index == FEATURE for n in reductions) else CLASS  # d over features, else c
            canonical = node.func(node.body.xreplace({node.index: bound}), bound) if isinstance(node, ClassSum) else node
            if canonical not in named:
                named[canonical] = sympy.Symbol(f"_row_quantity{len(definitions)}", real=True)
                definitions.append((named[canonical], canonical))
            exprs = [e.xreplace({node: named[canonical]}) for e in exprs]


def _kronecker_sentence(vs: Sequence[Variant], names: Mapping[str, str]) -> str:
    for v in vs:
        deltas = sorted((d for e in _expressions([v]) for d in e.atoms(sympy.KroneckerDelta)), key=sympy.default_sort_key)
        if deltas:
            printer = DocPrinter(_symbol_map(v, names))
            i, j = (printer._print(a) for a in deltas[0].args)
            return rf"${printer._print(deltas[0])}$ is 1 when ${i} = {j}$, else 0"
    return ""


def page(loaded: LoadedSpec) -> DocPage:
    spec = loaded.spec
    vs = variants(loaded.path, spec)
    names = argument_names(loaded, vs)
    doc_variants = [DocVariant(_variant_title(v, loaded, names), _equations(v, names)) for v in vs]
    primitives = sorted({type(p) for e in _expressions(vs) for p in e.atoms(Primitive)}, key=lambda c: c.__name__)
    tensors = [p for p in spec.params if isinstance(p, Tensor)]
    def described(name: str) -> str:
        return rf"\texttt{{{tex_escape(name)}}} (${names[name]}$)" if name in names else rf"\texttt{{{tex_escape(name)}}}"

    differentiable = [described(t.name) for t in tensors if t.differentiable]
    differentiable += [described(p.name) + " when it holds class probabilities" for p in spec.params
                       if isinstance(p, ClassTarget) and p.probabilities_switch]

    return DocPage(
        name=spec.name,
        title=tex_escape(spec.name),
        spec_path=tex_escape(loaded.path.as_posix()),
        torch_name=tex_escape(spec.torch_name or f"torch.nn.functional.{spec.name}"),
        summary=tex_escape(spec.summary),
        row=spec.kind == "row",
        scores=names.get("input", "x"),
        kronecker=_kronecker_sentence(vs, names),
        params=tuple(
            DocParam(tex_escape(p.name), names.get(p.name, ""), _kind(p), tex_escape(_default(p)), _param_doc(p))
            for p in spec.params
        ),
        differentiable=tuple(differentiable),
        not_differentiable=tuple(described(t.name) for t in tensors if not t.differentiable),
        reductions=tuple((tex_escape(r.name), _denominator_tex(r.denominator, names))
                         for r in reductions(spec) if r.name != "none"),
        variants=tuple(doc_variants),
        primitives=tuple(_primitive_doc(c) for c in primitives),
        notes=tuple(tex_escape(n) for n in spec.notes),
        float32_arithmetic=spec.float32_arithmetic,
    )
