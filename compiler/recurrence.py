"""The recurrence kernel shape: reverse-mode differentiation of a dynamic program, by the compiler.

A spec states only the forward program (``compiler.lang.Recurrence``): v[t, s] = combine(v at the
predecessors) + emission(t, s), an initial row, and a readout of the last row. This module

- derives (``derive``): the local partials of the body in each predecessor and in the emission
  (sympy.diff), the partials of the emission in each array element it reads, and the partials of
  the readout in the end values. A log-sum-exp node of the body is then replaced by its value
  solved from the stored v and the emission (log-sum-exp(p) = v - e), so each partial becomes a
  softmax weight exp(p - v + e) in [0, 1]: the reverse sweep runs in linear space, stably;
- generates the adjoint recurrence from those partials: the adjoint of a state is the sum, over
  the states it is a predecessor of, of their adjoint times the partial; the adjoint of an
  emitted array element is the state's adjoint times the emission partial. Nobody writes beta;
- lowers both sweeps to printed code (``lower``) for ``templates/recurrence.py.j2``, and the
  derived formulas to LaTeX (``page``) for the documentation. Two lowerings serve speed alone:
  the sweeps visit only the states of a row that can come from the initial row and reach the
  readout (``window``), and a log-sum-exp in the state loop exponentiates all terms but its
  largest, whose exponential is 1 (``select_max_lse``).
"""
from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable

import sympy

from .lang import (
    CLASS,
    FEATURE,
    OTHER_CLASS,
    STATE,
    STEP,
    ClassSum,
    Flag,
    Int,
    Loss,
    Option,
    PerSample,
    Real,
    Recurrence,
    Reduction,
    Step,
    Tensor,
    class_sum,
)
from .load import LoadedSpec
from .lower import SignatureParam, prepare_source, signature
from .optimize import resolve_sums, share
from .primitives import logaddexp, logsumexp3, stable_logsumexp
from .printer import SpecError, to_code

VALUE = sympy.Symbol("v", real=True)  # v[t, s], the state being computed
EMISSION = sympy.Symbol("e", real=True)  # emission(t, s)
LOSS = sympy.Symbol("loss", real=True)  # the readout's value
# torch's log_softmax convention: G the derived gradient of one element, Z the array's element,
# R the sum of G over its row (the class axis)
CONVENTION_G = sympy.Symbol("G", real=True)
CONVENTION_Z = sympy.Symbol("Z", real=True)
CONVENTION_R = sympy.Symbol("R", real=True)
_OPAQUE = (logaddexp, logsumexp3)
# the kernel's physical state index: the table has PAD absent states on each side
PHYSICAL = sympy.Symbol("j", integer=True)
# the first state of a row's window (see ``window``): the kernel views its rows from there
WINDOW_START = sympy.Symbol("lo", integer=True)


@dataclass(frozen=True)
class Read:
    """An element of a differentiable array the emission reads, and d emission / d it."""

    array: str
    access: sympy.Indexed
    partial: sympy.Expr
    summed: bool  # read inside a sum over FEATURE (one element per term)


@dataclass(frozen=True)
class Derived:
    """A recurrence and its derivatives, all SymPy (before any lowering)."""

    recurrence: Recurrence
    symbols: dict[str, sympy.Basic]  # arrays (IndexedBase) and reals (Symbol) by name
    layouts: dict[str, str]
    predecessors: tuple[sympy.Symbol, ...]  # one value symbol per Step
    guards: tuple[sympy.Basic, ...]  # per Step, of STEP and STATE
    combine: sympy.Expr
    emission: sympy.Expr  # of the arrays at (STEP, STATE)
    partials: tuple[sympy.Expr, ...]  # d v / d predecessor, in predecessors, VALUE, EMISSION
    emission_partial: sympy.Expr  # d v / d emission
    reads: tuple[Read, ...]
    initial: sympy.Expr  # of STATE
    ends: tuple[sympy.Symbol, ...]  # end(k) = v[last, states-1-k]
    readout: sympy.Expr
    seeds: tuple[sympy.Expr, ...]  # d loss / d end(k), in ends and LOSS
    convention: sympy.Expr | None  # torch's log_softmax convention, in CONVENTION_G/Z/R
    pad: int


def _call(function: Callable[..., Any], positional: list[Any], named: dict[str, Any], path: str, field: str) -> Any:
    """Call a spec function with the named values it asks for; failures name the spec and field."""
    wanted = list(inspect.signature(function).parameters)[len(positional):]
    unknown = [w for w in wanted if w not in named]
    if unknown:
        raise SpecError(f"{path}: field 'recurrence.{field}': unknown parameters {unknown}")
    try:
        result = sympy.sympify(function(*positional, **{w: named[w] for w in wanted}))
    except Exception as error:
        raise SpecError(f"{path}: field 'recurrence.{field}': {type(error).__name__}: {error}") from error
    if not isinstance(result, (sympy.Expr, sympy.logic.boolalg.Boolean)):
        raise SpecError(f"{path}: field 'recurrence.{field}': returned {type(result).__name__}, not a SymPy expression")
    return result


def recover(expr: sympy.Expr, defining: sympy.Expr, known: sympy.Expr) -> sympy.Expr:
    """Each log-sum-exp node of ``defining`` in ``expr`` replaced by its value solved from
    ``defining == known``: the stored result is reused instead of recomputing the node."""
    for node in sorted(defining.atoms(*_OPAQUE), key=sympy.default_sort_key):
        unknown = sympy.Dummy("u")
        solutions = sympy.solve(sympy.Eq(defining.xreplace({node: unknown}), known), unknown)
        if len(solutions) == 1 and not solutions[0].has(*_OPAQUE):
            expr = expr.xreplace({node: solutions[0]})
    return expr


def _reads(emission: sympy.Expr, differentiable: set[str]) -> tuple[Read, ...]:
    """Each element the emission reads of a differentiable array, with d emission / d element.
    Inside a sum over FEATURE each term reads its own element: the partial is the term's."""
    found: list[Read] = []
    sums = sorted(emission.atoms(ClassSum), key=sympy.default_sort_key)
    pieces: list[tuple[sympy.Expr, bool]] = [(s.body, True) for s in sums]
    pieces.append((emission.xreplace({s: sympy.Dummy("sum") for s in sums}), False))
    for expr, summed in pieces:
        accesses = sorted(
            (a for a in expr.atoms(sympy.Indexed) if str(a.base.label) in differentiable), key=sympy.default_sort_key
        )
        for access in accesses:
            element = sympy.Dummy("element", real=True)
            partial = sympy.diff(expr.xreplace({access: element}), element).xreplace({element: access})
            found.append(Read(str(access.base.label), access, partial, summed))
    return tuple(found)


def log_softmax_convention() -> sympy.Expr:
    """torch's ctc gradient: that of loss(log_softmax(z)) in z, at z = the given log-probabilities.
    Derived here from sum_c G_c (z_c - log sum_c' exp z_c'), with the rows normalised
    (sum_c' exp z_c' = 1): G_k - exp(z_k) sum_c G_c."""
    from .derive import GRAD_CLASS

    z = sympy.IndexedBase("z", real=True)
    g = sympy.IndexedBase("G", real=True)
    normaliser = class_sum(sympy.exp(z[OTHER_CLASS]), OTHER_CLASS)
    composed = class_sum(g[CLASS] * (z[CLASS] - sympy.log(normaliser)))
    derivative = resolve_sums(sympy.diff(composed, z[GRAD_CLASS]))
    derivative = derivative.xreplace({normaliser: sympy.Integer(1), class_sum(g[CLASS]): CONVENTION_R})
    derivative = derivative.xreplace({g[GRAD_CLASS]: CONVENTION_G, z[GRAD_CLASS]: CONVENTION_Z})
    return sympy.expand(derivative)


def derive(loaded: LoadedSpec) -> Derived:
    spec, path = loaded.spec, str(loaded.path)
    rec = spec.recurrence
    if rec is None:
        raise SpecError(f"{path}: field 'recurrence': kind='recurrence' needs recurrence=Recurrence(...)")
    layouts = {name: layout for name, _, layout in rec.arrays}
    symbols: dict[str, sympy.Basic] = {}
    for name, layout in layouts.items():
        symbols[name] = sympy.IndexedBase(name, integer=True) if layout == "states" else sympy.IndexedBase(name, real=True)
    for p in spec.params:
        if isinstance(p, Real):
            symbols[p.name] = sympy.Symbol(p.name, positive=True)
    reals = {n: s for n, s in symbols.items() if isinstance(s, sympy.Symbol)}
    predecessors = tuple(sympy.Symbol(f"p{k}", real=True) for k in range(len(rec.predecessors)))
    for step in rec.predecessors:
        if step.dt not in (-1, 0) or step.ds > 0 or (step.dt, step.ds) == (0, 0):
            raise SpecError(f"{path}: field 'recurrence.predecessors': {step} is not before (t, s)")
    guards = tuple(
        _call(s.guard, [], symbols, path, "predecessors.guard") if callable(s.guard) else sympy.sympify(s.guard)
        for s in rec.predecessors
    )
    combine = _call(rec.combine, list(predecessors), reals, path, "combine")
    emission = _call(rec.emission, [], symbols, path, "emission")
    body = combine + EMISSION
    partials = tuple(recover(sympy.diff(body, p), combine, VALUE - EMISSION) for p in predecessors)
    emission_partial = sympy.diff(body, EMISSION)
    differentiable = {p.name for p in spec.params if isinstance(p, Tensor) and p.differentiable}
    ends: list[sympy.Symbol] = []

    def end(k: int) -> sympy.Symbol:
        while len(ends) <= k:
            ends.append(sympy.Symbol(f"_e{len(ends)}", real=True))
        return ends[k]

    readout = _call(rec.readout, [end], reals, path, "readout")
    seeds = tuple(recover(sympy.diff(readout, e), readout, LOSS) for e in ends)
    initial = _call(rec.initial, [STATE], {}, path, "initial")
    return Derived(
        recurrence=rec,
        symbols=symbols,
        layouts=layouts,
        predecessors=predecessors,
        guards=guards,
        combine=combine,
        emission=emission,
        partials=partials,
        emission_partial=emission_partial,
        reads=_reads(emission, differentiable),
        initial=initial,
        ends=tuple(ends),
        readout=readout,
        seeds=seeds,
        convention=log_softmax_convention() if rec.torch_log_softmax else None,
        pad=max(-step.ds for step in rec.predecessors),
    )


# ---------------------------------------------------------------------------------------------
# lowering: the two sweeps as printed code
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """Code of some expressions: loads of the predecessors, sums over FEATURE (name, body) as
    loops, then temporaries."""

    temporaries: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    sums: tuple[tuple[str, str], ...] = ()
    loads: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Term:
    """One successor Y of state X in the reverse sweep: adjoint(Y) times the taped partial of Y
    in its predecessor ``slot`` (which is X)."""

    row: str  # 'next' (Y at t + 1) or 'cur' (Y at t)
    offset: int  # Y's state is s + offset
    slot: int


@dataclass(frozen=True)
class Scatter:
    array: str
    index: str  # printed index into the array's per-sample gradient view
    partial: str  # d v / d element, at the current state
    summed: bool


@dataclass(frozen=True)
class RecurrenceIR:
    name: str
    spec_path: str
    summary: str
    signature: tuple[SignatureParam, ...]
    options: tuple[SignatureParam, ...]  # keyword-only extensions
    arrays: tuple[tuple[str, int, str], ...]
    differentiable: tuple[str, ...]
    grad_axes: tuple[int, ...]  # the batch axis of each differentiable array
    required: tuple[str, ...]
    reals: tuple[str, ...]
    flags: tuple[str, ...]
    ints: tuple[str, ...]
    pad: int
    slots: int  # predecessors per state: the tape holds one partial per slot
    window: bool  # rows computed only over the states that matter, [lo, hi] (see ``window``)
    window_lo: str  # code of lo (of T, S, t); '0' without a window
    window_hi: str  # code of hi; 'S - 1' without a window
    state_arrays: tuple[str, ...]  # the 'states' arrays, viewed from lo as NAME_w
    absent: str
    initial: str
    emission: Block  # outputs: the emission at the current state
    forward: Block  # outputs: the state's value, then its partial in each predecessor
    value_only: Block  # outputs: the state's value (no gradient wanted)
    inner: tuple[Term, ...]  # rows with a next row (t < steps - 1)
    last: tuple[Term, ...]  # the last row: successors in the same row only
    same_row: bool  # a predecessor in the same row: the reverse sweep runs states backwards
    feature_extent: str  # code of the feature count (sums over FEATURE), '' when none
    scatters: tuple[Scatter, ...]
    readout: Block  # outputs: the loss
    ends: int
    seeds: tuple[str, ...]
    convention: str  # '' or the code of torch's log_softmax convention, in _g, _z, _r
    convention_array: str
    convention_index: str  # the element (t, c) of sample n in the whole array, e.g. 't, n, c'
    zero_infinity: str
    exact_option: str
    mean_length: str
    mean_at_least: int
    prepare_source: str


class _Printer:
    """SymPy of the current state to kernel code: arrays through their per-sample views, states
    by the padded index j, predecessors through the rows prev (t - 1) and cur (t), the emission
    through its row buffer em."""

    def __init__(self, derived: Derived, windowed: bool = False) -> None:
        self.d = derived
        # rows, 'states' arrays (``NAME_w``) and the emission row are views from the window's
        # first state: j counts from there, and state s is at j - PAD + lo
        self.windowed = windowed
        self.rows = {-1: sympy.IndexedBase("prev", real=True), 0: sympy.IndexedBase("cur", real=True)}
        self.emitted = sympy.IndexedBase("em", real=True)

    def at_state(self, expr: sympy.Expr) -> sympy.Expr:
        """``expr`` of the body's symbols at the current state (predecessors stay symbols: see
        ``loads``)."""
        return expr.xreplace({EMISSION: self.emitted[PHYSICAL]})

    def loads(self) -> tuple[tuple[str, str], ...]:
        """Each predecessor loaded unconditionally (the padding keeps it in bounds), then masked
        by its guard: a load inside a conditional expression would stop vectorization."""
        result = []
        absent = sympy.sympify(self.d.recurrence.absent)
        for step, p, guard in zip(self.d.recurrence.predecessors, self.d.predecessors, self.d.guards):
            result.append((f"_l{p}", to_code(self.rows[step.dt][PHYSICAL + step.ds])))
            if guard != sympy.true:
                masked = sympy.Piecewise((sympy.Symbol(f"_l{p}", real=True), guard), (absent, True))
                result.append((str(p), self.code(masked)))
            else:
                result.append((str(p), f"_l{p}"))
        return tuple(result)

    def physical(self, expr: sympy.Expr) -> sympy.Expr:
        """Arrays to their per-sample views: 'states' arrays are padded like the table (state s
        is at j), the others are indexed by s = j - PAD."""
        def view(node: sympy.Indexed) -> sympy.Expr:
            name = str(node.base.label)
            if name not in self.d.layouts:
                return node
            indices = list(node.indices)
            if self.d.layouts[name] == "states":  # state s is at j of a padded row
                indices = [i.xreplace({STATE: PHYSICAL}) for i in indices]
            indices = [self.physical(i) for i in indices]
            kind = {"integer": True} if self.d.layouts[name] == "states" else {"real": True}
            suffix = "_w" if self.windowed and self.d.layouts[name] == "states" else "_n"
            return sympy.IndexedBase(f"{name}{suffix}", **kind)[tuple(indices)]

        expr = expr.replace(lambda n: isinstance(n, sympy.Indexed), view)
        return expr.xreplace({STATE: PHYSICAL - self.d.pad + (WINDOW_START if self.windowed else 0)})

    def code(self, expr: sympy.Expr) -> str:
        return to_code(self.physical(expr))

    def block(self, exprs: list[sympy.Expr], loads: tuple[tuple[str, str], ...] = (), select_max: bool = False) -> Block:
        exprs = [self.physical(e) for e in exprs]
        if select_max:  # the state loops: log-sum-exps whose largest term is selected, not exponentiated
            exprs, network = select_max_lse(exprs)
            loads = loads + network
        # log-sum-exp inlined: a helper call in the inner loop would stop its vectorization
        exprs = [e.replace(lambda n: isinstance(n, _OPAQUE), lambda n: stable_logsumexp(*n.args)) for e in exprs]
        sums: dict[sympy.Basic, sympy.Symbol] = {}
        for node in sorted({n for e in exprs for n in e.atoms(ClassSum)}, key=sympy.default_sort_key):
            if node.index != FEATURE:
                raise SpecError(f"a recurrence sums over FEATURE only, not {node.index}")
            sums[node] = sympy.Symbol(f"_f{len(sums)}", real=True)
        shared = share([e.xreplace(sums) for e in exprs])
        temporaries = tuple((str(s), to_code(e)) for s, e in shared.temporaries)
        loops = tuple((str(name), to_code(node.body)) for node, name in sums.items())
        outputs = tuple(to_code(e) for e in shared.outputs)
        return Block(temporaries, outputs, loops, _used(loads, [c for _, c in loops + temporaries] + list(outputs)))


def _used(code: tuple[tuple[str, str], ...], later: list[str]) -> tuple[tuple[str, str], ...]:
    """The assignments of ``code`` whose names the code after them, or ``later``, reads."""
    kept: list[tuple[str, str]] = []
    for name, value in reversed(code):
        if any(re.search(rf"\b{re.escape(name)}\b", c) for c in [v for _, v in kept] + later):
            kept.append((name, value))
    return tuple(reversed(kept))


def select_max_lse(exprs: list[sympy.Expr]) -> tuple[list[sympy.Expr], tuple[tuple[str, str], ...]]:
    """Each log-sum-exp node lse(a_1, ..., a_n) of ``exprs``, and each exp(a_k - lse(...)) (its
    partial in a_k, as sympy.diff gives it), from code that finds the largest term by comparisons:
    its exponential is exp(0) = 1 and only the other n - 1 terms are exponentiated (the state loop
    costs 1 exp less a log-sum-exp of 3). The same shift as ``stable_logsumexp`` (the largest term,
    or the most negative float when every term is -inf) and the same results at -inf, +inf and
    nan: the largest term's exponential is 0 at -inf and nan at +inf and nan. Each comparison
    keeps both of its operands (one as the larger, one as the smaller), so a nan is never lost.
    Returns the rewritten expressions and the code that computes, per node, the shift (_xN_s),
    the sum of the exponentials (_xN_sum), its log (_xN_lg) and each term's exponential (_xN_eK)."""
    nodes = sorted({n for e in exprs for n in e.atoms(*_OPAQUE)}, key=sympy.default_sort_key)
    code: list[tuple[str, str]] = []
    replaced = list(exprs)
    lowest = repr(-sys.float_info.max)
    for i, node in enumerate(nodes):
        args = node.args
        if any(a.has(*_OPAQUE) for a in args):
            continue
        x = f"_x{i}"
        terms = [f"{x}_a{k}" for k in range(len(args))]
        code += [(t, to_code(a)) for t, a in zip(terms, args)]
        # a chain of comparisons: hi_k is the larger of hi_{k-1} and a_k, lo_k the other
        hi = terms[0]
        for k in range(1, len(args)):
            code += [(f"{x}_c{k}", f"{hi} > {terms[k]}"),
                     (f"{x}_h{k}", f"{hi} if {x}_c{k} else {terms[k]}"),
                     (f"{x}_l{k}", f"{terms[k]} if {x}_c{k} else {hi}")]
            hi = f"{x}_h{k}"
        code.append((f"{x}_s", f"{hi} if {hi} > {lowest} else {lowest}"))
        code.append((f"{x}_top", f"1.0 if ({hi} > -math.inf and {hi} < math.inf) else "
                                 f"(0.0 if {hi} == -math.inf else math.nan)"))
        for k in range(1, len(args)):
            code.append((f"{x}_x{k}", f"rt.fast_exp({x}_l{k} - {x}_s)"))  # a term minus the largest: <= 0
        # each term's exponential: back along the chain, the larger side inherits the top's
        larger = f"{x}_top"
        for k in range(len(args) - 1, 0, -1):
            code.append((f"{x}_e{k}", f"{x}_x{k} if {x}_c{k} else {larger}"))
            code.append((f"{x}_g{k}", f"{larger} if {x}_c{k} else {x}_x{k}"))
            larger = f"{x}_g{k}"
        code.append((f"{x}_e0", larger))
        code.append((f"{x}_sum", " + ".join([f"{x}_top"] + [f"{x}_x{k}" for k in range(1, len(args))])))
        code.append((f"{x}_lg", f"rt.fast_log({x}_sum)"))  # the sum is in [1, n], 0 or nan
        shift, total = sympy.Symbol(f"{x}_s", real=True), sympy.Symbol(f"{x}_sum", positive=True)
        log_total = sympy.Symbol(f"{x}_lg", real=True)
        term_exps = {sympy.exp(a - node): sympy.Symbol(f"{x}_e{k}", real=True) / total for k, a in enumerate(args)}
        replaced = [e.xreplace(term_exps).xreplace({node: shift + log_total}) for e in replaced]
    return replaced, tuple(code)


def _evaluate(expr: sympy.Expr, values: dict[sympy.Symbol, Any]) -> Any:
    """``expr`` (log-sum-exps in their shifted form) at the given values, in mpmath: exp(-inf) is
    0 and log(0) is -inf there, as in the kernels."""
    import mpmath

    expr = expr.replace(lambda n: isinstance(n, _OPAQUE), lambda n: stable_logsumexp(*n.args))
    symbols = sorted(expr.free_symbols, key=sympy.default_sort_key)
    missing = [x for x in symbols if x not in values]
    if missing:
        raise ValueError(f"no value for {missing}")
    with mpmath.workdps(30):
        return sympy.lambdify(symbols, expr, "mpmath")(*[values[x] for x in symbols])


def _initial_support_end(d: Derived) -> int | None:
    """The last state at which the initial row is not absent (-PAD - 1 if none), or None when the
    initial row is not absent beyond some state. The row is a function of s alone whose
    conditions compare s with integers: evaluated at each integer up to one past the largest."""
    initial = d.initial
    if initial.free_symbols - {STATE}:
        return None
    constants = [0]
    for relation in initial.atoms(sympy.core.relational.Relational):
        if STATE in relation.free_symbols:
            for side in relation.args:
                if side.is_number:
                    constants.append(int(sympy.ceiling(side)))
    top = max(constants) + 1
    if top > 4096:
        return None
    absent = sympy.sympify(d.recurrence.absent)
    last = -d.pad - 1
    for s in range(-d.pad, top + 1):
        value = sympy.sympify(initial.xreplace({STATE: sympy.Integer(s)}))
        if value != absent:
            if s == top:  # every state from here on
                return None
            last = s
    return last


def window(d: Derived) -> tuple[str, str] | None:
    """Code of the first and last state of row t that matter, for rows of T steps and S states:
    [lo, hi], or None when every state may matter.

    With every predecessor in the row before (dt = -1) and a state advancing at most A states a
    row (A = max -ds), state s of row t reaches the readout's last row only if s >= S - ends -
    A (T - 1 - t): the others' adjoints are 0 whatever their values, and their values reach no
    state that matters. A state beyond the initial row's support advanced by A (t + 1) is absent:
    when a state whose predecessors are all absent is absent itself, and an absent predecessor
    has partial 0 (checked here at sample values), skipping it changes nothing."""
    rec = d.recurrence
    if any(step.dt != -1 for step in rec.predecessors) or not d.ends:
        return None
    for access in d.emission.atoms(sympy.Indexed):  # 'states' arrays are viewed from the window
        name = str(access.base.label)
        if d.layouts.get(name) == "states" and any(STATE in i.free_symbols for i in access.indices[1:]):
            return None
    advance = max(-step.ds for step in rec.predecessors)
    lo = f"max(0, S - {len(d.ends)} - {advance} * (T - 1 - t))"
    hi = "S - 1"
    support = _initial_support_end(d)
    if support is not None and _absent_is_absorbing(d):
        hi = f"min(S - 1, {support} + {advance} * (t + 1))"
    return lo, hi


def _absent_is_absorbing(d: Derived) -> bool:
    """All predecessors absent: the state is absent; one absent predecessor: its partial is 0."""
    import mpmath

    absent = sympy.sympify(d.recurrence.absent)
    if absent not in (sympy.oo, -sympy.oo):
        return False
    infinite = mpmath.inf if absent == sympy.oo else -mpmath.inf
    reals = {x: mpmath.mpf("1.75") for x in d.combine.free_symbols if x not in d.predecessors}
    samples = [mpmath.mpf(v) for v in ("0.3", "-1.2", "2.5", "-0.7")]
    try:
        for e in samples[:2]:
            everything = {**reals, **{p: infinite for p in d.predecessors}, EMISSION: e}
            if _evaluate(d.combine + EMISSION, everything) != infinite:
                return False
        body = d.combine + EMISSION
        for k, p in enumerate(d.predecessors):
            values = {**reals, **{q: samples[(i + k) % len(samples)] for i, q in enumerate(d.predecessors)}}
            values[p], values[EMISSION] = infinite, samples[1]
            if _evaluate(sympy.diff(body, p), values) != 0:
                return False
    except (ValueError, TypeError, ZeroDivisionError):
        return False
    return True


def lower(loaded: LoadedSpec) -> RecurrenceIR:
    """Both sweeps as code. The forward sweep computes each state's value and, on the same
    operands, its local partials (sympy.diff of the body, CSE'd with it: the log-sum-exp's
    exponentials serve both), which it records on a tape; the reverse sweep is then the linear
    adjoint recurrence over the tape, from the readout's partials back to the first row."""
    spec, path = loaded.spec, loaded.path
    d = derive(loaded)
    rec = d.recurrence
    bounds = window(d)
    printer = _Printer(d, windowed=bounds is not None)
    steps = rec.predecessors
    body = d.combine + EMISSION
    raw_partials = [sympy.diff(body, p) for p in d.predecessors]
    emission = printer.block([d.emission])
    forward = printer.block([printer.at_state(e) for e in [body] + raw_partials], printer.loads(), select_max=True)
    value_only = printer.block([printer.at_state(body)], printer.loads(), select_max=True)
    # state X = Y + step_k is predecessor k of Y = X - step_k
    terms = tuple(Term("next" if step.dt == -1 else "cur", -step.ds, k) for k, step in enumerate(steps))
    scatters = []
    for read in d.reads:
        index = printer.physical(read.access)
        scatters.append(Scatter(read.array, ", ".join(str(i) for i in index.indices),
                                printer.code(d.emission_partial * read.partial), read.summed))
    feature_extent = ""
    for name, symbol in d.symbols.items():
        for access in sorted(d.emission.atoms(sympy.Indexed), key=sympy.default_sort_key):
            if access.base == symbol and FEATURE in access.indices and not feature_extent:
                feature_extent = f"{name}_n.shape[{list(access.indices).index(FEATURE)}]"
    convention = convention_index = ""
    if d.convention is not None:
        # exp in the precision of the array (float32 data: fast_exp32, accurate to the output's
        # float32); indexed in the whole arrays, whose class axis the kernel knows is contiguous
        convention = to_code(d.convention.xreplace({
            CONVENTION_G: sympy.Symbol("_g", real=True),
            CONVENTION_Z: sympy.Symbol("_z", real=True),
            CONVENTION_R: sympy.Symbol("_r", real=True),
        }), like=f"{rec.torch_log_softmax}_a")
        indices = ["t", "c"]
        indices.insert(next(axis for name, axis, _ in rec.arrays if name == rec.torch_log_softmax), "n")
        convention_index = ", ".join(indices)
    differentiable = tuple(p.name for p in spec.params if isinstance(p, Tensor) and p.differentiable)
    mean = spec.mean
    return RecurrenceIR(
        name=spec.name,
        spec_path=path.as_posix(),
        summary=spec.summary,
        signature=signature(spec),
        options=tuple(SignatureParam(p.name, repr(p.default)) for p in spec.params if isinstance(p, Option)),
        arrays=rec.arrays,
        differentiable=differentiable,
        grad_axes=tuple(next(axis for name, axis, _ in rec.arrays if name == g) for g in differentiable),
        required=tuple(p.name for p in spec.params if isinstance(p, Tensor)),
        reals=tuple(p.name for p in spec.params if isinstance(p, Real)),
        flags=tuple(p.name for p in spec.params if isinstance(p, Flag)),
        ints=tuple(p.name for p in spec.params if isinstance(p, Int)),
        pad=d.pad,
        slots=len(steps),
        window=bounds is not None,
        window_lo=bounds[0] if bounds else "0",
        window_hi=bounds[1] if bounds else "S - 1",
        state_arrays=tuple(name for name, _, layout in rec.arrays if layout == "states"),
        absent=to_code(sympy.sympify(rec.absent)),
        initial=to_code(d.initial.xreplace({STATE: sympy.Symbol("s", integer=True)})),
        emission=emission,
        forward=forward,
        value_only=value_only,
        inner=terms,
        last=tuple(t for t in terms if t.row == "cur"),
        same_row=any(s.dt == 0 for s in steps),
        feature_extent=feature_extent,
        scatters=tuple(scatters),
        readout=printer.block([d.readout]),
        ends=len(d.ends),
        seeds=tuple(to_code(s) for s in d.seeds),
        convention=convention,
        convention_array=rec.torch_log_softmax,
        convention_index=convention_index,
        zero_infinity=rec.zero_infinity,
        exact_option=rec.exact_option,
        mean_length=mean.length if isinstance(mean, PerSample) else "",
        mean_at_least=mean.at_least if isinstance(mean, PerSample) else 1,
        prepare_source=prepare_source(path, spec),
    )


def validate(path: str, spec: Loss) -> None:
    """What load.validate checks for kind='recurrence' instead of ``element``."""
    rec = spec.recurrence
    if rec is None:
        raise SpecError(f"{path}: field 'recurrence': kind='recurrence' needs recurrence=Recurrence(...)")
    if not rec.predecessors:
        raise SpecError(f"{path}: field 'recurrence.predecessors': at least one predecessor")
    params = {p.name: p for p in spec.params}
    for name, axis, layout in rec.arrays:
        if layout not in ("steps", "states", "other"):
            raise SpecError(f"{path}: field 'recurrence.arrays': {name}: layout {layout!r} is not steps/states/other")
        if axis < 0:
            raise SpecError(f"{path}: field 'recurrence.arrays': {name}: batch axis {axis} < 0")
    for field, name, kind in ((rec.zero_infinity, "zero_infinity", Flag), (rec.exact_option, "exact_option", Option)):
        if field and not isinstance(params.get(field), kind):
            raise SpecError(f"{path}: field 'recurrence.{name}': {field!r} must name a {kind.__name__} parameter")
    if rec.torch_log_softmax and rec.torch_log_softmax not in {n for n, _, _ in rec.arrays}:
        raise SpecError(f"{path}: field 'recurrence.torch_log_softmax': {rec.torch_log_softmax!r} is not an array")
    if not isinstance(spec.mean, (PerSample,)) or not any(isinstance(p, Reduction) for p in spec.params):
        raise SpecError(f"{path}: field 'mean': a recurrence loss's 'mean' is PerSample(...)")


# ---------------------------------------------------------------------------------------------
# documentation: the recurrence and its derived adjoint as LaTeX
# ---------------------------------------------------------------------------------------------

def page(loaded: LoadedSpec) -> Any:
    """The loss's DocPage: the forward program as the spec states it, then what the compiler
    derived: local partials, the adjoint recurrence, the array gradients, torch's convention."""
    from .docs import DocEquation, DocPage, DocParam, DocPrinter, _default, _fallback_name, _kind, _param_doc, tex_escape

    spec = loaded.spec
    d = derive(loaded)
    rec = d.recurrence
    names: dict[sympy.Basic, str] = {STEP: "t", STATE: "s", FEATURE: "d", LOSS: r"\ell", EMISSION: "e"}
    for name, symbol in d.symbols.items():
        names[symbol.label if isinstance(symbol, sympy.IndexedBase) else symbol] = _fallback_name(name)
    v = sympy.IndexedBase("v", real=True)
    bar = sympy.IndexedBase("vbar", real=True)
    names[v.label], names[bar.label] = "v", r"\bar{v}"
    last_t, last_s = sympy.Symbol("T", integer=True), sympy.Symbol("S", integer=True)
    class Printer(DocPrinter):
        def class_sum_prefix(self, index: sympy.Symbol) -> str:  # a feature axis has D entries
            return r"\sum_{d=0}^{D-1}" if index == FEATURE else str(super().class_sum_prefix(index))

    printer = Printer(names)

    def tex(expr: sympy.Basic) -> str:
        return str(printer._print(expr))

    def value(dt: int, ds: int, t: sympy.Expr = STEP, s: sympy.Expr = STATE) -> sympy.Expr:
        return v[t + dt, s + ds]

    absent = sympy.sympify(rec.absent)
    operands = {p: sympy.Piecewise((value(st.dt, st.ds), g), (absent, True)) if g != sympy.true else value(st.dt, st.ds)
                for p, st, g in zip(d.predecessors, rec.predecessors, d.guards)}
    ends = {e: v[last_t - 1, last_s - 1 - k] for k, e in enumerate(d.ends)}
    equations = [
        DocEquation("v_{t,s}", (tex(d.combine.xreplace(operands)) + " + " + tex(d.emission),)),
        DocEquation("v_{-1,s}", (tex(d.initial),)),
        DocEquation(r"\ell", (tex(d.readout.xreplace(ends)),)),
    ]
    derived = []
    for p, st, partial in zip(d.predecessors, rec.predecessors, d.partials):
        at_state = partial.xreplace({VALUE: v[STEP, STATE], EMISSION: sympy.Symbol("e_{t,s}"), p: value(st.dt, st.ds)})
        derived.append(DocEquation(rf"\frac{{\partial v_{{t,s}}}}{{\partial {tex(value(st.dt, st.ds))}}}", (tex(at_state),)))
    terms = []
    for p, st, partial, guard in zip(d.predecessors, rec.predecessors, d.partials, d.guards):
        t, s = STEP - st.dt, STATE - st.ds
        weight = partial.xreplace({VALUE: v[t, s], EMISSION: sympy.Symbol(f"e_{{{tex(t)},{tex(s)}}}"), p: v[STEP, STATE]})
        guard_at = guard.xreplace({STEP: t, STATE: s})
        term = tex(bar[t, s]) + r"\," + printer.parenthesize(weight, 0)
        terms.append(term if guard_at == sympy.true else rf"\mathbf{{1}}\left[{tex(guard_at)}\right] {term}")
    derived.append(DocEquation(r"\bar{v}_{t,s}", tuple(("+ " if i else "") + t for i, t in enumerate(terms))))
    for k, seed in enumerate(d.seeds):
        seeded = seed.xreplace(ends)
        end = f"v_{{T-1,S-{1 + k}}}"
        derived.append(DocEquation(rf"\bar{{{end}}} \mathrel{{+}}= \frac{{\partial \ell}}{{\partial {end}}}", (tex(seeded),)))
    for read in d.reads:
        target = rf"\bar{{{tex(read.access)}}}" + (r"\ (\text{each } d)" if read.summed else "")
        partial = tex(d.emission_partial * read.partial)
        derived.append(DocEquation(target + r" \mathrel{+}", (rf"\bar{{v}}_{{t,s}} \left({partial}\right)",)))
    if d.convention is not None:
        z = names.get(d.symbols[rec.torch_log_softmax].label, "z") if rec.torch_log_softmax in d.symbols else "z"
        convention = d.convention.xreplace({
            CONVENTION_G: sympy.Symbol(rf"\bar{{{z}}}_{{t,c}}"), CONVENTION_Z: sympy.Symbol(f"{z}_{{t,c}}"),
            CONVENTION_R: sympy.Symbol(rf"\textstyle\sum_{{c'}} \bar{{{z}}}_{{t,c'}}")})
        derived.append(DocEquation(r"g_{t,c}", (tex(convention),)))
    mean = r"L = \frac{1}{N}\sum_n \ell_n"
    if isinstance(spec.mean, PerSample) and spec.mean.length:
        mean += rf" \big/ \max\left({_fallback_name(spec.mean.length)}_n, {spec.mean.at_least}\right)"
    tensors = [p for p in spec.params if isinstance(p, Tensor)]
    return DocPage(
        name=spec.name,
        title=tex_escape(spec.name),
        spec_path=tex_escape(loaded.path.as_posix()),
        torch_name=tex_escape("none" if spec.torch_name == "none" else spec.torch_name or f"torch.nn.functional.{spec.name}"),
        summary=tex_escape(spec.summary),
        row=False,
        scores="",
        kronecker="",
        params=tuple(DocParam(tex_escape(p.name), "", _kind(p), tex_escape(_default(p)), _param_doc(p)) for p in spec.params),
        differentiable=tuple(rf"\texttt{{{tex_escape(t.name)}}}" for t in tensors if t.differentiable),
        not_differentiable=tuple(rf"\texttt{{{tex_escape(t.name)}}}" for t in tensors if not t.differentiable),
        reductions=(("sum", r"L = \sum_n \ell_n"), ("mean", mean)),
        variants=(),
        primitives=(),
        notes=tuple(tex_escape(n) for n in spec.notes),
        recurrence=tuple(equations),
        adjoint=tuple(derived),
        convention=tex_escape(rec.torch_log_softmax),
    )
