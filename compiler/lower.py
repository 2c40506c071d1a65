"""Stage 4, lower: SymPy to the kernel IR, frozen dataclasses of printed strings.

Templates receive only this IR: they make no mathematical decisions.
"""
from __future__ import annotations

import inspect
import re
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import sympy

from .derive import ReductionRule, Variant, denominator_kind, reductions, variants
from .lang import Bool, ClassSum, ClassTarget, Distance, Flag, Int, Legacy, Loss, OptionalTensor, Real, Reduction, Tensor
from .load import LoadedSpec
from .optimize import Shared, share
from .primitives import STAGED
from .printer import SpecError, shifted_exp, to_code


@dataclass(frozen=True)
class Body:
    """One loop body: temporaries, then the loss value and/or the gradients. With
    ``exponentials`` the template runs it over blocks of elements, each in two loops: the first
    computes the staged temporaries and the exponentials into scratch, the second the rest."""

    temporaries: tuple[tuple[str, str], ...]
    loss: str  # '' when the body computes no loss
    gradients: tuple[tuple[str, str], ...]
    staged_temporaries: tuple[tuple[str, str], ...] = ()  # those the exponentials' arguments need
    exponentials: tuple[tuple[str, str], ...] = ()  # (name, code): in the data's type, read as name


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
    nonzero: tuple[str, ...]  # Reals compiled also at exactly 0: the selector says whether nonzero
    flags: tuple[str, ...]
    choices: str  # Python literal: {flag: (accepted values, error message)} for non-boolean flags
    lenient: tuple[str, ...]  # boolean flags that accept any truthy value
    bools: tuple[str, ...]  # array arguments that may be given as bool arrays
    legacy: bool
    result_dtype: str
    integers_promote: bool
    reductions: tuple[ReductionIR, ...]
    prepare_source: str  # '' when the spec has no prepare step
    variants: tuple[KernelVariant, ...]
    float32_arithmetic: bool  # float32 data computed in float32 (printer.DataPrecisionPrinter)
    signature_only_prepare: bool  # repeated plain calls reuse bind()'s outcome (runtime Plan)


UPSTREAM = {True: "scale", False: "s"}  # the kernels' gradient factor: fused (by scale), backward (s each)


def body(variant: Variant, with_loss: bool, with_gradients: bool, float32_arithmetic: bool = False) -> Body:
    """A loop body. With float32_arithmetic the gradients include their upstream factor, which
    the printer multiplies in first as torch's autograd does (scale * w * 2(x - t), not
    scale * (w * 2(x - t)), which overflows float32 where torch's product does not); else the
    template multiplies it in (float64 products of float32 data do not overflow)."""
    expressions: list[sympy.Expr] = [variant.loss] if with_loss else []
    names = [name for name, _ in variant.gradients] if with_gradients else []
    upstream = sympy.Symbol(UPSTREAM[with_loss], real=True) if float32_arithmetic else sympy.Integer(1)
    expressions += [upstream * grad for _, grad in variant.gradients] if with_gradients else []
    shared = share(expressions)
    # every array of an elementwise kernel has the result dtype (rt.promote): the first one says
    # in which precision exp and log run
    like = f"{variant.arrays[0]}_a"
    data = variant.arrays if float32_arithmetic else None
    reals = variant.reals + ("scale",)  # s is read from the data: already the data's type
    leading = tuple(UPSTREAM.values())

    def code(expr: sympy.Expr) -> str:
        return to_code(expr, like, data, reals, leading)

    staged, exponentials, shared = stage_exponentials(shared)
    temporaries = tuple((str(symbol), code(expr)) for symbol, expr in shared.temporaries)
    outputs = [code(expr) for expr in shared.outputs]
    loss = outputs.pop(0) if with_loss else ""
    # the exponentials in the data's precision and type whatever the arithmetic (exp_as is
    # exp_in widened): float32 scratch and a float32 loop (bce_with_logits float32, 1e6, one
    # thread: 1.64 ms with float64 scratch, 1.40 ms)
    return Body(temporaries, loss, tuple(zip(names, outputs)),
                tuple((str(symbol), code(expr)) for symbol, expr in staged),
                tuple((str(symbol), f"rt.exp_in(-abs({code(z)}), {like})") for symbol, z in exponentials))


Assignments = tuple[tuple[sympy.Symbol, sympy.Expr], ...]


def stage_exponentials(shared: Shared) -> tuple[Assignments, Assignments, Shared]:
    """Each sigmoid(z) and softplus(z) of a body rewritten to take e = exp(-|z|) as a symbol
    _eK (primitives.STAGED), one per distinct z: (the temporaries z needs, (_eK, z), the
    rewritten body). The kernel computes the exponentials of a block in a loop of their own:
    fused into one loop, exp, log and division chain per element longer than the processor's
    window of instructions in flight, and run at its latency (value_and_grad at 1e6, 2 threads:
    bce_with_logits float32 0.96 -> 0.72 ms, float64 1.57 -> 1.25 ms; soft_margin float32
    0.63 -> 0.47 ms). Each element's values are unchanged; the loss sum adds per block."""
    expressions = [expr for _, expr in shared.temporaries] + list(shared.outputs)
    calls = sorted({call for expr in expressions for call in expr.atoms(*STAGED)
                    if not call.args[0].atoms(*STAGED)}, key=sympy.default_sort_key)
    arguments = sorted({call.args[0] for call in calls}, key=sympy.default_sort_key)
    if not arguments:
        return (), (), shared
    exponential = {z: sympy.Symbol(f"_e{k}", real=True) for k, z in enumerate(arguments)}
    staged = {call: STAGED[type(call)](call.args[0], exponential[call.args[0]]) for call in calls}
    defined = dict(shared.temporaries)
    needed: set[sympy.Symbol] = set()
    pending = [symbol for z in arguments for symbol in z.free_symbols]
    while pending:
        symbol = pending.pop()
        if symbol in defined and symbol not in needed:
            needed.add(symbol)
            pending.extend(defined[symbol].free_symbols)
    rewritten = Shared(tuple((symbol, expr.xreplace(staged)) for symbol, expr in shared.temporaries),
                       tuple(expr.xreplace(staged) for expr in shared.outputs))
    return (tuple((symbol, expr) for symbol, expr in shared.temporaries if symbol in needed),
            tuple((exponential[z], z) for z in arguments), rewritten)


def lower_variant(variant: Variant, float32_arithmetic: bool = False) -> KernelVariant:
    selector_values = [value for _, value in variant.flags] + [value for _, value in variant.present]
    selector = "(" + "".join(f"{value!r}, " for value in selector_values) + ")"
    return KernelVariant(
        key=variant.key,
        selector=selector,
        arrays=variant.arrays,
        reals=variant.reals,
        differentiable=tuple(name for name, _ in variant.gradients),
        forward=body(variant, True, False, float32_arithmetic),
        backward=body(variant, False, True, float32_arithmetic),
        fused=body(variant, True, True, float32_arithmetic),
    )


def _literal(value: object) -> str:
    return repr(value)


def bool_arrays(spec: Loss) -> tuple[str, ...]:
    """The parameters a bool array may be given for: a Tensor's ``accepts_bool`` (by default,
    those torch does not differentiate) and every other kind (weights, class targets)."""
    return tuple(
        p.name for p in spec.params
        if not isinstance(p, Tensor) or (not p.differentiable if p.accepts_bool is None else p.accepts_bool)
    )


def signature(spec: Loss) -> tuple[SignatureParam, ...]:
    params = []
    for p in spec.params:
        if isinstance(p, Tensor):
            params.append(SignatureParam(p.name, ""))
        elif isinstance(p, (OptionalTensor, Legacy)):
            params.append(SignatureParam(p.name, "None"))
        elif isinstance(p, (Real, Flag, Bool)):
            params.append(SignatureParam(p.name, _literal(p.default)))
        elif isinstance(p, Distance):
            params.append(SignatureParam(p.name, "None"))
        elif isinstance(p, Reduction):
            params.append(SignatureParam(p.name, _literal(p.default)))
        elif isinstance(p, ClassTarget):
            params.append(SignatureParam(p.name, ""))
        elif isinstance(p, Int):
            params.append(SignatureParam(p.name, _literal(p.default)))
    return tuple(params)


def nonzero(spec: Loss) -> tuple[str, ...]:
    return tuple(p.name for p in spec.params if isinstance(p, Real) and p.specialize_zero)


def choices(spec: Loss) -> str:
    found = {p.name: (p.values, p.error) for p in spec.params if isinstance(p, Flag) and p.values != (False, True)}
    return repr(found)


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
        return tuple(lower_variant(v, spec.float32_arithmetic) for v in variants(path, spec))
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
        nonzero=nonzero(spec),
        flags=tuple(p.name for p in spec.params if isinstance(p, Flag)),
        choices=choices(spec),
        lenient=tuple(p.name for p in spec.params if isinstance(p, Flag) and not p.strict),
        bools=bool_arrays(spec),
        legacy=any(isinstance(p, Legacy) for p in spec.params),
        result_dtype=spec.result_dtype,
        integers_promote=spec.integers_promote,
        reductions=tuple(lower_reduction(r) for r in reductions(spec)),
        prepare_source=prepare_source(path, spec),
        variants=lower_variants(path, spec),
        float32_arithmetic=spec.float32_arithmetic,
        signature_only_prepare=spec.signature_only_prepare or spec.prepare is None,
    )


# ---------------------------------------------------------------------------------------------
# row losses: loops over the class axis
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stmt:
    """One statement of a row body: an assignment, or a reduction loop over the classes.

    kind 'assign': name = code. kind 'sum' / 'max': name starts at 0 / -inf, then for index in
    range(C), run body and fold code into name (max ignores nan: nan then reaches the result
    through the sum of exp(x - max), as in torch). A 'sum' with ``cache`` first stores each
    term in that per-row scratch array (a loop without a reduction: it vectorizes at the data's
    width), then adds them up; the per-class loop reads the terms back. kind 'amax':
    a maximum that propagates nan (lang.ClassMax, torch's amax).
    """

    kind: str
    name: str
    code: str
    index: str = ""
    body: tuple["Stmt", ...] = ()
    cache: str = ""
    # a 'sum' whose term is 0 wherever a row array is 0 runs over that array's nonzero indices
    # only: ``listed`` names the per-row index list, ``listed_count`` its length (see
    # _RowLowering.listed_term); multilabel_margin's sums over a row's labels are O(labels)
    listed: str = ""
    listed_count: str = ""
    # a per-class 'sum' whose value is only read where a row array is nonzero at class k runs
    # only there (code of the condition), and is 0 elsewhere
    guard: str = ""


@dataclass(frozen=True)
class RowBody:
    row: tuple[Stmt, ...]  # per row, before the per-class loop
    loss: str  # '' when the body computes no loss
    per_class: tuple[Stmt, ...]  # inside `for k in range(C)`
    gradients: tuple[tuple[str, str], ...]
    # scratch arrays of C values, one set per chunk: (name, array whose dtype it takes) for terms
    # computed in the data's precision (an exponential), (name, '') for float64 terms,
    # (name, INDEX_LIST) for a row's list of nonzero indices (Stmt.listed)
    caches: tuple[tuple[str, str], ...] = ()
    # a loss that calls exp or log on row values is computed after the row loop, from values
    # each row stores (buffer name, code); deferred_loss reads them back at index _i
    deferred: tuple[tuple[str, str], ...] = ()
    deferred_loss: str = ""
    # set where every gradient is KroneckerDelta(k, index) * value (nll_loss): the class whose
    # entry is nonzero, and then ``gradients`` hold the values. The kernel zeroes the row and
    # writes that one entry, as torch does: computing and converting a float64 select per class
    # made nll_loss's (4096, 1000) float32 kernel 3x slower than zeroing the rows
    sparse_index: str = ""


@dataclass(frozen=True)
class RowVariant:
    key: str
    selector: str
    arrays: tuple[str, ...]  # kernel array arguments, in order
    layouts: tuple[str, ...]  # per array: 'rows', 'classes' or 'target'
    reals: tuple[str, ...]
    differentiable: tuple[str, ...]
    probabilities: bool
    forward: RowBody
    fused: RowBody
    # the fused body again with every per-row name suffixed _b: the contiguous kernel runs two
    # small rows per iteration, both in the same loops, so that each loop's set-up is shared and
    # the two rows' dependency chains overlap (cross_entropy (65536, 32) float32: 2.80 -> 2.36 ms)
    fused_b: RowBody


PAIR_SUFFIX = "_b"
INDEX_LIST = "int64"  # the 'like' of a cache that holds class indices


def _row_locals(body: RowBody, arrays: tuple[str, ...], layouts: tuple[str, ...],
                differentiable: tuple[str, ...]) -> set[str]:
    """The names a row body assigns per row: its statements and scratch arrays, the row views
    of the kernel's arrays, the gradient rows and the row's grad_output scale ``s``."""
    names = {"s"} | {f"{g}_gr" for g in differentiable}
    for array, layout in zip(arrays, layouts):
        if layout == "rows":
            names.add(f"{array}_r")
        elif layout in ("target", "row"):
            names.add(array)

    def visit(stmts: tuple[Stmt, ...]) -> None:
        for stmt in stmts:
            names.add(stmt.name)
            names.update(name for name in (stmt.cache, stmt.listed, stmt.listed_count) if name)
            visit(stmt.body)

    visit(body.row)
    visit(body.per_class)
    names |= {cache for cache, _ in body.caches}
    return names


def _suffixed(body: RowBody, names: set[str], suffix: str) -> RowBody:
    """``body`` with each of ``names`` (whole identifiers, not attributes) given ``suffix``;
    the deferred loss's buffers are shared by both rows and keep their names."""
    pattern = re.compile(r"(?<![\w.])(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")(?!\w)")

    def rename(code: str) -> str:
        return pattern.sub(lambda m: m.group(1) + suffix, code)

    def stmts(items: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
        return tuple(replace(st, name=rename(st.name), code=rename(st.code), body=stmts(st.body),
                             cache=rename(st.cache), listed=rename(st.listed),
                             listed_count=rename(st.listed_count), guard=rename(st.guard)) for st in items)

    return RowBody(
        row=stmts(body.row),
        loss=rename(body.loss),
        per_class=stmts(body.per_class),
        gradients=tuple((name, rename(code)) for name, code in body.gradients),
        caches=tuple((rename(cache), like) for cache, like in body.caches),
        deferred=tuple((buffer, rename(code)) for buffer, code in body.deferred),
        deferred_loss=body.deferred_loss,
        sparse_index=rename(body.sparse_index),
    )


class _RowLowering:
    """Turns the row expressions of one variant into statements: sums become loops, each
    log(sum exp(b)) is shifted by the row maximum of b, and shared work is computed once."""

    def __init__(self, variant: Variant, layouts: dict[str, str]) -> None:
        from .derive import GRAD_CLASS
        from .lang import CLASSES

        self.variant = variant
        self.layouts = layouts
        self.k = GRAD_CLASS
        self.classes = CLASSES
        self.counter = 0
        # row-level sums (no nested loop): statement name -> (loop index, term)
        self.terms: dict[str, tuple[sympy.Symbol, sympy.Expr]] = {}
        # row arrays whose nonzero indices a listed sum runs over -> (list, count) names
        self.index_lists: dict[str, tuple[str, str]] = {}
        # (id of a row-level statement list, the sum with its index renamed) -> the name of its
        # loop's result: a sum met again later in the same list reads that result (lower_sums)
        self.lowered: dict[tuple[int, sympy.Expr], sympy.Symbol] = {}

    @property
    def precision_array(self) -> str:
        """The kernel array whose dtype the row's exponentials (and their caches) are computed in."""
        return f"{self.variant.arrays[0]}_a"

    def fresh(self, prefix: str) -> sympy.Symbol:
        self.counter += 1
        return sympy.Symbol(f"_{prefix}{self.counter}", real=True)

    # -- stable log-sum-exp -----------------------------------------------------------------
    def shift_exponentials(self, exprs: list[sympy.Expr], stmts: list[Stmt], depth: int) -> list[sympy.Expr]:
        """sum_c exp(b) = exp(M) Z with M = max_c b and Z = sum_c exp(b - M): nothing overflows,
        and exp(x_k) / sum_c exp(x_c) becomes exp(x_k - M) / Z."""
        sums = sorted(
            {s for e in exprs for s in _outer_sums(e) if isinstance(s.body, sympy.exp)},
            key=sympy.default_sort_key,
        )
        replacements: dict[sympy.Expr, sympy.Expr] = {}
        shifted: set[sympy.Expr] = set()  # exponents b - M, at the sum's index and at class k
        for node in sums:
            index = node.index
            exponent = node.body.args[0]
            maximum = self.fresh("m")
            stmts.append(self.reduction("max", maximum, exponent, index, depth, stmts))
            z = self.fresh("z")
            stmts.append(self.reduction("sum", z, shifted_exp(exponent - maximum), index, depth, stmts))
            replacements[node] = sympy.exp(maximum) * z
            shifted |= {exponent - maximum, exponent.xreplace({index: self.k}) - maximum}
        if not replacements:
            return exprs
        result = []
        for e in exprs:
            e = e.xreplace(replacements)
            e = e.replace(
                lambda n: isinstance(n, sympy.log) and isinstance(n.args[0], sympy.Mul)
                and any(isinstance(f, sympy.exp) for f in n.args[0].args),
                lambda n: sympy.Add(*[f.args[0] if isinstance(f, sympy.exp) else sympy.log(f) for f in n.args[0].args]),
            )
            e = sympy.powsimp(e, combine="exp")
            # softmax's exp(x_k - M) in the gradients: the same shifted term as in the sum
            result.append(e.replace(lambda n: isinstance(n, sympy.exp) and n.args[0] in shifted,
                                    lambda n: shifted_exp(n.args[0])))
        return result

    # -- sums to loops ----------------------------------------------------------------------
    def reduction(self, op: str, name: sympy.Symbol, body: sympy.Expr, index: sympy.Symbol, depth: int,
                  before: list[Stmt]) -> Stmt:
        """The loop of one reduction; reductions inside its body that do not depend on its index
        (the norms inside cosine's sum over features) become loops of their own in ``before``,
        run once rather than once per iteration."""
        loop_index = sympy.Symbol(f"c{depth}", integer=True)
        body = body.xreplace({index: loop_index})
        listed = self.listed_term(body, loop_index) if op == "sum" else None
        if listed is not None:
            array, body = listed
        invariant = sorted(set(_invariant_reductions(body, loop_index)), key=sympy.default_sort_key)
        if invariant:
            lowered = self.lower_sums(list(invariant), before, depth)
            body = body.xreplace(dict(zip(invariant, lowered)))
        inner: list[Stmt] = []
        (value,) = self.lower_sums([body], inner, depth + 1)
        if listed is not None:
            index_list, count = self.index_lists.setdefault(array, (f"_nz_{array}", f"_nnz_{array}"))
            return Stmt(op, str(name), self.code(value), str(loop_index), tuple(inner),
                        listed=index_list, listed_count=count)
        if op == "sum" and depth == 0 and not inner:
            self.terms[str(name)] = (loop_index, value)
        code = self.code(value)
        row_element = re.fullmatch(rf"(\w+_r)\[{loop_index}\]", code)
        if op == "max" and not inner and row_element:
            # the maximum of one row's elements: the runtime's vectorized integer maximum
            return Stmt("assign", str(name), f"rt.row_max({row_element.group(1)})")
        return Stmt(op, str(name), code, str(loop_index), tuple(inner))

    def listed_term(self, body: sympy.Expr, index: sympy.Symbol) -> tuple[str, sympy.Expr] | None:
        """(row array A, term) where ``body`` is Piecewise((0, A[index] == 0), (term, True)), A an
        array of the row: the sum then needs only A's nonzero indices."""
        array = _zero_guard(body, index, self.row_arrays)
        return None if array is None else (array, body.args[1].expr)

    @property
    def row_arrays(self) -> set[str]:
        return {name for name in self.variant.arrays if self.layouts.get(name) == "rows"}

    def guard_sums(self, exprs: list[sympy.Expr], per_class: list[Stmt], others: list[Stmt]) -> None:
        """A per-class sum that the expressions read only where a row array is nonzero at class k
        (inside Piecewise((0, A[k] == 0), (..., True))) is computed only there: the value it
        would have elsewhere is never used. multilabel_margin's hinge sum over the classes, per
        label, is then computed per label, not per class."""
        def codes(stmts: list[Stmt] | tuple[Stmt, ...]) -> list[str]:
            return [code for st in stmts for code in [st.code, *codes(st.body)]]

        for position, stmt in enumerate(per_class):
            symbol = sympy.Symbol(stmt.name, real=True)
            read_by_statements = any(re.search(rf"\b{stmt.name}\b", code) for code in
                                     codes([st for st in per_class + others if st is not stmt]) + codes(stmt.body))
            if stmt.kind != "sum" or stmt.cache or read_by_statements:
                continue
            for array in sorted({a for e in exprs for a in _zero_guards(e, self.k, self.row_arrays)}):
                unguarded = [_drop_guarded(e, self.k, array) for e in exprs]
                if any(e.has(symbol) for e in exprs) and not any(e.has(symbol) for e in unguarded):
                    per_class[position] = replace(stmt, guard=f"{array}_r[{self.k}] != 0.0")
                    break

    def cache_terms(self, exprs: list[sympy.Expr], row_stmts: list[Stmt]) -> tuple[list[sympy.Expr], tuple[tuple[str, str], ...]]:
        """Where a row sum's term reappears at class k in the gradients (softmax: exp(x_k - M)
        in both Z and the gradient), the sum's loop stores each term and the gradient loop reads
        it back: one exp per class instead of two."""
        caches: list[tuple[str, str]] = []
        for position, stmt in enumerate(row_stmts):
            if stmt.kind != "sum" or stmt.name not in self.terms:
                continue
            index, term = self.terms[stmt.name]
            at_k = term.xreplace({index: self.k})
            if not term.has(index) or not any(e.has(at_k) for e in exprs):
                continue
            cache = f"_cache{len(caches)}"
            # an exponential is computed in the data's precision (see code()): a float32 cache
            # then holds it exactly, and float32 stores are what lets its loop vectorize 8 wide
            caches.append((cache, self.precision_array if isinstance(term, (sympy.exp, shifted_exp)) else ""))
            exprs = [e.xreplace({at_k: sympy.IndexedBase(cache, real=True)[self.k]}) for e in exprs]
            row_stmts[position] = replace(stmt, cache=cache)
        return exprs, tuple(caches)

    def lower_sums(
        self, exprs: list[sympy.Expr], stmts: list[Stmt], depth: int, per_class: list[Stmt] | None = None
    ) -> list[sympy.Expr]:
        """Replace each outermost sum by a loop's result; with ``per_class``, sums that depend on
        the gradient's class k go there (inside ``for k``), the others stay row reductions."""
        exprs = self.shift_exponentials(exprs, stmts, depth)
        exprs = self.lower_maxima(exprs, stmts, depth)
        outermost = sorted({s for e in exprs for s in _outer_sums(e)}, key=sympy.default_sort_key)
        replacements = {}
        for node in outermost:
            target = per_class if per_class is not None and self.k in node.free_symbols else stmts
            # one loop per distinct sum of a row-level list (the body's row or per-class
            # statements): the same sum, met with another index or again inside another sum's
            # body (a norm), reads the first loop's result. cosine_similarity's gradients named
            # |x1|^2 four times and |x2|^2 four times: 11 loops over each row where 5 do. Not
            # deeper: a loop's inner list dies with it, and a later list could reuse its id
            key = (id(target), node.body.xreplace({node.index: _SUM_INDEX}))
            name = self.lowered.get(key) if depth == 0 else None
            if name is None:
                name = self.fresh("s")
                target.append(self.reduction("sum", name, node.body, node.index, depth, target))
                if depth == 0:
                    self.lowered[key] = name
            replacements[node] = name
        return [e.xreplace(replacements) for e in exprs]

    def lower_maxima(self, exprs: list[sympy.Expr], stmts: list[Stmt], depth: int) -> list[sympy.Expr]:
        """Each maximum (lang.ClassMax) becomes one nan-propagating loop ahead of the sums, which
        read it by name: a maximum's derivative sums over the terms equal to it."""
        from .lang import ClassMax

        maxima = sorted({m for e in exprs for m in e.atoms(ClassMax)}, key=sympy.default_sort_key)
        replacements = {}
        for node in maxima:
            name = self.fresh("m")
            stmts.append(self.reduction("amax", name, node.body, node.index, depth, stmts))
            replacements[node] = name
        return [e.xreplace(replacements) for e in exprs] if replacements else exprs

    # -- printing ---------------------------------------------------------------------------
    def code(self, expr: sympy.Expr) -> str:
        views = {}
        for name, base in self.variant.symbols.items():
            if isinstance(base, sympy.IndexedBase):
                suffix = "_a" if self.layouts.get(name) == "classes" else "_r"
                views[base] = sympy.IndexedBase(f"{name}{suffix}", real=True)
        expr = expr.replace(
            lambda n: isinstance(n, sympy.Indexed) and n.base in views,
            lambda n: views[n.base][n.indices],
        )
        expr = expr.subs(self.classes, sympy.Symbol("C", real=True))
        # exp in the data's precision: float32 rows get float32 exponentials (softmax terms, whose
        # argument x - max torch rounds to float32 as well): 3x cheaper than float64 ones alone,
        # 13% on cross_entropy (4096, 1000) single-threaded, where loads and the loops cost the rest
        return to_code(expr, like=self.precision_array)

    def sparse_gradients(self) -> tuple[sympy.Expr, list[sympy.Expr]] | None:
        """(index, values) where every gradient is KroneckerDelta(k, index) * value, with index
        and value free of k (the same index for all); else None."""
        index: sympy.Expr | None = None
        values = []
        for _, gradient in self.variant.gradients:
            value, delta = gradient.as_independent(self.k, as_Add=False)
            if not isinstance(delta, sympy.KroneckerDelta) or self.k not in delta.args:
                return None
            other = delta.args[1] if delta.args[0] == self.k else delta.args[0]
            if self.k in other.free_symbols or (index is not None and other != index):
                return None
            index = other
            values.append(value)
        return (index, values) if index is not None else None

    def body(self, with_loss: bool, with_gradients: bool) -> RowBody:
        exprs: list[sympy.Expr] = [self.variant.loss] if with_loss else []
        names = [name for name, _ in self.variant.gradients] if with_gradients else []
        sparse = self.sparse_gradients() if with_gradients else None
        if sparse is not None:
            exprs += sparse[1]
        else:
            exprs += [g for _, g in self.variant.gradients] if with_gradients else []
        row_stmts: list[Stmt] = []
        per_class: list[Stmt] = []
        self.index_lists = {}
        self.lowered = {}  # keyed by the ids of this body's lists, which a later body may reuse
        lowered = self.lower_sums(exprs, row_stmts, 0, per_class)
        self.guard_sums(lowered, per_class, row_stmts)
        caches: tuple[tuple[str, str], ...] = ()
        if with_gradients:
            lowered, caches = self.cache_terms(lowered, row_stmts)
        # each listed array's nonzero indices, once per row, before any sum reads them
        row_stmts[:0] = [Stmt("assign", count, f"rt.nonzero_indices({array}_r, {index_list})")
                         for array, (index_list, count) in sorted(self.index_lists.items())]
        caches += tuple((index_list, INDEX_LIST) for _, (index_list, _) in sorted(self.index_lists.items()))
        shared = share(lowered)
        k_dependent: set[sympy.Symbol] = {sympy.Symbol(s.name, real=True) for s in per_class}
        for symbol, value in shared.temporaries:
            stmt = Stmt("assign", str(symbol), self.code(value))
            if self.k in value.free_symbols or value.free_symbols & k_dependent:
                k_dependent.add(symbol)
                per_class.append(stmt)
            else:
                row_stmts.append(stmt)
        outputs = [self.code(e) for e in shared.outputs]
        loss = outputs.pop(0) if with_loss else ""
        deferred: tuple[tuple[str, str], ...] = ()
        deferred_loss = ""
        if with_loss and _calls_transcendental(shared.outputs[0]):
            deferred, deferred_loss = self.defer(shared.outputs[0])
        assert sparse is None or not per_class, "a one-hot gradient's value is free of k (sparse_gradients)"
        return RowBody(tuple(row_stmts), loss, tuple(per_class), tuple(zip(names, outputs)), caches,
                       deferred, deferred_loss, self.code(sparse[0]) if sparse is not None else "")

    def defer(self, loss: sympy.Expr) -> tuple[tuple[tuple[str, str], ...], str]:
        """The loss as a function of per-row values (each array element and row-level symbol it
        reads) stored in chunk buffers: evaluated in a loop of its own after the rows, its log
        runs vectorized and leaves each row's chain of dependent work (log-sum-exp at C = 32:
        a scalar float32 log per row was 30% of the kernel, measured)."""
        kernel_level = {sympy.Symbol(name, real=True) for name in self.variant.reals} | {self.classes}
        elements = sorted(loss.atoms(sympy.Indexed), key=sympy.default_sort_key)
        values: list[sympy.Expr] = list(elements)
        rest = loss.xreplace({e: sympy.Symbol(f"_e{i}") for i, e in enumerate(elements)})
        values += sorted(
            (s for s in rest.free_symbols if s not in kernel_level and not str(s).startswith("_e")),
            key=sympy.default_sort_key,
        )
        at = sympy.Symbol("_i", integer=True)
        buffers = {value: sympy.IndexedBase(f"_d{i}", real=True)[at] for i, value in enumerate(values)}
        stored = tuple((f"_d{i}", self.code(value)) for i, value in enumerate(values))
        return stored, self.code(loss.xreplace(buffers))


_SUM_INDEX = sympy.Symbol("_sum_index", integer=True)  # a sum's index when sums are compared


def _calls_transcendental(expr: sympy.Expr) -> bool:
    from .primitives import Primitive

    return bool(expr.has(sympy.exp, sympy.log, shifted_exp)) or any(
        isinstance(f, Primitive) and f.NUMBA.transcendental for f in expr.atoms(Primitive))


def _invariant_reductions(expr: sympy.Expr, index: sympy.Symbol) -> list[sympy.Expr]:
    """The outermost sums and maxima inside ``expr`` that do not depend on ``index``."""
    from .lang import ClassMax

    if isinstance(expr, (ClassSum, ClassMax)) and index not in expr.free_symbols:
        return [expr]
    found: list[sympy.Expr] = []
    for arg in expr.args:
        found += _invariant_reductions(arg, index)
    return found


def _outer_sums(expr: sympy.Expr) -> list[ClassSum]:
    """Sums not nested inside another sum."""
    if isinstance(expr, ClassSum):
        return [expr]
    found: list[ClassSum] = []
    for arg in expr.args:
        found += _outer_sums(arg)
    return found


def _zero_guard(expr: sympy.Expr, index: sympy.Symbol, arrays: set[str]) -> str | None:
    """A when ``expr`` is Piecewise((0, Eq(A[index], 0)), (term, True)) for A in ``arrays``."""
    if not isinstance(expr, sympy.Piecewise) or len(expr.args) != 2 or expr.args[1].cond is not sympy.true:
        return None
    value, condition = expr.args[0]
    if value != 0 or not isinstance(condition, sympy.Eq):
        return None
    sides = set(condition.args)
    element = next((a for a in sides if isinstance(a, sympy.Indexed)), None)
    if element is None or sides != {element, sympy.S.Zero} or element.indices != (index,):
        return None
    name = str(element.base)
    return name if name in arrays else None


def _zero_guards(expr: sympy.Expr, index: sympy.Symbol, arrays: set[str]) -> set[str]:
    """Every A of a Piecewise((0, Eq(A[index], 0)), ...) inside ``expr``."""
    return {a for node in expr.atoms(sympy.Piecewise) if (a := _zero_guard(node, index, arrays))}


def _drop_guarded(expr: sympy.Expr, index: sympy.Symbol, array: str) -> sympy.Expr:
    """``expr`` with each Piecewise((0, Eq(array[index], 0)), ...) replaced by 0."""
    return expr.replace(lambda n: _zero_guard(n, index, {array}) is not None, lambda n: sympy.S.Zero)


def lower_row_variant(variant: Variant, layouts: dict[str, str]) -> RowVariant:
    selector_values = [value for _, value in variant.flags] + [value for _, value in variant.present]
    selector = "(" + "".join(f"{value!r}, " for value in selector_values) + ")"
    lowering = _RowLowering(variant, layouts)
    kernel_layouts = tuple("rows" if layouts[a] == "target" and variant.probabilities else layouts[a] for a in variant.arrays)
    differentiable = tuple(name for name, _ in variant.gradients)
    forward = lowering.body(True, False)
    fused = lowering.body(True, True)
    return RowVariant(
        key=variant.key,
        selector=selector,
        arrays=variant.arrays,
        layouts=kernel_layouts,
        reals=variant.reals,
        differentiable=differentiable,
        probabilities=variant.probabilities,
        forward=forward,
        fused=fused,
        fused_b=_suffixed(fused, _row_locals(fused, variant.arrays, kernel_layouts, differentiable), PAIR_SUFFIX),
    )


@dataclass(frozen=True)
class RowIR:
    """kind='pair' reuses this IR and the row template, with its own runtime driver."""

    name: str
    spec_path: str
    summary: str
    signature: tuple[SignatureParam, ...]
    arrays: tuple[str, ...]
    layouts: tuple[tuple[str, str], ...]
    required: tuple[str, ...]
    differentiable: tuple[str, ...]
    optional: tuple[str, ...]
    reals: tuple[str, ...]
    nonzero: tuple[str, ...]
    flags: tuple[str, ...]  # flags, then probability switches: the variant selector's order
    choices: str
    lenient: tuple[str, ...]
    bools: tuple[str, ...]
    ignore_index: str
    target: str  # the ClassTarget's name
    class_axis: int
    switch_count: int
    legacy: bool
    reductions: tuple[ReductionIR, ...]
    prepare_source: str
    variants: tuple[RowVariant, ...]
    signature_only_prepare: bool = False  # repeated plain calls reuse bind()'s outcome (runtime RowPlan)
    driver: str = "rt.RowLoss"  # the runtime class that runs the kernels
    driver_fields: tuple[tuple[str, str], ...] = ()  # further keyword arguments, as Python literals
    epilogue: str = ""  # Python source appended to the module (pair functions: the distance protocol)


def lower_row(loaded: LoadedSpec) -> RowIR:
    from .derive import row_variants
    from .lang import Auxiliary, ClassTarget

    spec, path = loaded.spec, loaded.path
    layouts: dict[str, str] = {}
    for p in spec.params:
        if isinstance(p, (Tensor, OptionalTensor, Auxiliary)):
            layouts[p.name] = p.layout
        elif isinstance(p, ClassTarget):
            layouts[p.name] = "target"
    try:
        lowered = tuple(lower_row_variant(v, layouts) for v in row_variants(path, spec))
    except SpecError as error:
        if str(error).startswith(str(path)):
            raise
        raise SpecError(f"{path}: field 'element': {error}") from error
    switches = tuple(p.probabilities_switch for p in spec.params if isinstance(p, ClassTarget) and p.probabilities_switch)
    return RowIR(
        name=spec.name,
        spec_path=path.as_posix(),
        summary=spec.summary,
        signature=signature(spec),
        arrays=tuple(layouts),
        layouts=tuple(layouts.items()),
        required=tuple(p.name for p in spec.params if isinstance(p, (Tensor, ClassTarget))),
        differentiable=tuple(p.name for p in spec.params if isinstance(p, Tensor) and p.differentiable),
        optional=tuple(p.name for p in spec.params if isinstance(p, OptionalTensor)),
        reals=tuple(p.name for p in spec.params if isinstance(p, Real)),
        nonzero=nonzero(spec),
        flags=tuple(p.name for p in spec.params if isinstance(p, Flag)) + switches,
        choices=choices(spec),
        lenient=tuple(p.name for p in spec.params if isinstance(p, Flag) and not p.strict),
        bools=bool_arrays(spec),
        ignore_index=spec.ignore_index,
        target=next((p.name for p in spec.params if isinstance(p, ClassTarget)), ""),
        class_axis=spec.class_axis,
        switch_count=len(switches),
        legacy=any(isinstance(p, Legacy) for p in spec.params),
        reductions=tuple(lower_reduction(r) for r in reductions(spec)),
        prepare_source=prepare_source(path, spec),
        variants=lowered,
        signature_only_prepare=spec.signature_only_prepare,
    )
