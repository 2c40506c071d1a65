"""The stable primitives (compiler/primitives.py): each hand-written derivative equals the sympy
derivative of the primitive's plain rewrite, and each rendered Numba helper in the generated
runtime agrees with a high-precision reference, extremes included."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy

from compiler import primitives as P

a, b = sympy.symbols("a b", real=True)
mpmath.mp.dps = 50


# plain rewrite, the derivative arguments, and a sampler of points where the rewrite is valid
REWRITES = {
    "softplus": (lambda: P.softplus(a), lambda: sympy.log(1 + sympy.exp(a)), (a,), lambda r: {a: r.uniform(-30, 30)}),
    "sigmoid": (lambda: P.sigmoid(a), lambda: 1 / (1 + sympy.exp(-a)), (a,), lambda r: {a: r.uniform(-30, 30)}),
    "ratio": (lambda: P.ratio(a, b), lambda: a / b, (a, b),
              lambda r: {a: r.uniform(-3, 3), b: r.choice([-1, 1]) * r.uniform(0.1, 3)}),
    "xlogy": (lambda: P.xlogy(a, b), lambda: a * sympy.log(b), (a, b),
              lambda r: {a: r.choice([-1, 1]) * r.uniform(0.1, 3), b: r.uniform(0.01, 5)}),
    "bce_term": (lambda: P.bce_term(a, b), lambda: -(b * sympy.log(a) + (1 - b) * sympy.log(1 - a)), (a, b),
                 lambda r: {a: r.uniform(0.01, 0.99), b: r.uniform(0, 1)}),
    # autograd clamp_min: the derivative of max(a, b) away from the kink
    "clamp_min_ad": (lambda: P.clamp_min_ad(a, b), lambda: sympy.Piecewise((a, a >= b), (b, True)), (a, b),
                     lambda r: {a: r.uniform(-3, 3), b: r.uniform(-3, 3)}),
    # straight-through: the derivative is that of the identity in v, zero in lo
    "clamp_min_st": (lambda: P.clamp_min_st(a, b), lambda: a, (a, b), lambda r: {a: r.uniform(-3, 3), b: r.uniform(-3, 3)}),
    "logaddexp": (lambda: P.logaddexp(a, b), lambda: sympy.log(sympy.exp(a) + sympy.exp(b)), (a, b),
                  lambda r: {a: r.uniform(-30, 30), b: r.uniform(-30, 30)}),
    "logsumexp3": (lambda: P.logsumexp3(a, b, a - b), lambda: sympy.log(sympy.exp(a) + sympy.exp(b) + sympy.exp(a - b)),
                   (a, b), lambda r: {a: r.uniform(-30, 30), b: r.uniform(-30, 30)}),
    # norms over a feature axis: |a|^p and s^(1/p), differentiated in their first argument
    "abs_pow": (lambda: P.abs_pow(a, b), lambda: sympy.Abs(a) ** b, (a,),
                lambda r: {a: r.choice([-1, 1]) * r.uniform(0.1, 3), b: r.uniform(0.3, 3)}),
    "norm_root": (lambda: P.norm_root(a, b), lambda: a ** (1 / b), (a,),
                  lambda r: {a: r.uniform(0.1, 5), b: r.choice([-1, 1]) * r.uniform(0.3, 3)}),
    "minimum": (lambda: P.minimum(a, b), lambda: sympy.Min(a, b), (a, b),
                lambda r: {a: r.uniform(-3, 3), b: r.uniform(-3, 3)}),
    "peak": (lambda: P.peak(a, b), lambda: sympy.Piecewise((1, sympy.Eq(a, b)), (0, True)), (a, b),
             lambda r: {a: r.uniform(-3, 3), b: r.uniform(-3, 3)}),
    # evaluated as its first argument, differentiated as its second
    "two_forms": (lambda: P.two_forms(a, b), lambda: b, (a, b), lambda r: {a: r.uniform(-3, 3), b: r.uniform(-3, 3)}),
}


def unwrap(expr):
    """Primitives inside a derivative replaced by their plain forms, so that it evaluates."""
    plain = {
        P.softplus: lambda z: sympy.log(1 + sympy.exp(z)),
        P.sigmoid: lambda z: 1 / (1 + sympy.exp(-z)),
        P.ratio: lambda x, y: x / y,
        P.xlogy: lambda x, y: x * sympy.log(y),
        P.indicator: lambda c: sympy.Piecewise((1, c), (0, True)),
        P.abs_pow: lambda x, p: sympy.Abs(x) ** p,
        P.norm_root: lambda s, p: s ** (1 / p),
        P.logaddexp: lambda x, y: sympy.log(sympy.exp(x) + sympy.exp(y)),
        P.logsumexp3: lambda x, y, z: sympy.log(sympy.exp(x) + sympy.exp(y) + sympy.exp(z)),
    }
    for cls, rewrite in plain.items():
        expr = expr.replace(lambda e, cls=cls: isinstance(e, cls), lambda e, rewrite=rewrite: rewrite(*e.args))
    return expr


def test_every_primitive_is_covered():
    """indicator and where have tests of their own; the staged forms are never differentiated
    (test_staged_forms_are_their_primitives)."""
    names = {p.__name__ for p in P.PRIMITIVES}
    staged = {p.__name__ for p in P.STAGED.values()}
    assert names - set(REWRITES) <= {"indicator", "where"} | staged, names - set(REWRITES)


@pytest.mark.parametrize("name", list(REWRITES))
def test_fdiff_equals_derivative_of_rewrite(name):
    make, plain, variables, points = REWRITES[name]
    rng = np.random.default_rng(3)
    expr, rewrite = make(), plain()
    for variable in variables:
        mine = sympy.diff(expr, variable)
        theirs = sympy.diff(rewrite, variable)
        assert not mine.has(sympy.Derivative), f"{name}: d/d{variable} is not derived: {mine}"
        for _ in range(20):
            at = points(rng)
            lhs = complex(unwrap(mine).subs(at).evalf(30))
            rhs = complex(theirs.subs(at).evalf(30))
            assert lhs.imag == 0 and rhs.imag == 0
            assert lhs.real == pytest.approx(rhs.real, rel=1e-12, abs=1e-12), (name, variable, at)


def test_xlogy_derivative_at_zero_matches_torch():
    """torch: d xlogy(a, b)/da = 0 where a == 0 (xlogy(a != 0, b)), d/db = a / b (nan at 0/0)."""
    da = sympy.diff(P.xlogy(a, b), a)
    assert da.subs({a: 0, b: 2}) == 0
    db = sympy.diff(P.xlogy(a, b), b)
    assert db.func is P.ratio


def test_indicator_and_where_derivatives():
    c = a > 0
    assert sympy.diff(P.indicator(c), a) == 0
    expr = P.where(c, a**2, 3 * a)
    d = sympy.diff(expr, a)
    for value, expected in [(2.0, 4.0), (-1.0, 3.0)]:
        got = d.subs(a, value)
        got = got.replace(lambda e: isinstance(e, P.indicator), lambda e: sympy.Integer(1 if bool(e.args[0]) else 0))
        assert float(got) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# rendered Numba helpers
# ---------------------------------------------------------------------------------------------

def runtime():
    from generated import _runtime

    return _runtime


def test_every_primitive_is_rendered():
    rt = runtime()
    for primitive in P.PRIMITIVES:
        assert callable(getattr(rt, primitive.NUMBA.name)), primitive.NUMBA.name


def mp_softplus(z):
    return float(mpmath.log1p(mpmath.exp(mpmath.mpf(z))))


def mp_sigmoid(z):
    return float(1 / (1 + mpmath.exp(-mpmath.mpf(z))))


Z = [-1000.0, -745.0, -100.0, -30.0, -1.0, -1e-10, 0.0, 1e-10, 1.0, 30.0, 40.0, 100.0, 709.0, 1000.0, 1e300]


@pytest.mark.parametrize("z", Z)
def test_softplus_helper(z):
    assert runtime().softplus(z) == pytest.approx(mp_softplus(z), rel=1e-15, abs=0)


@pytest.mark.parametrize("z", Z)
def test_sigmoid_helper(z):
    assert runtime().sigmoid(z) == pytest.approx(mp_sigmoid(z), rel=1e-15, abs=0)


def test_softplus_and_sigmoid_at_infinities_and_nan():
    rt = runtime()
    assert rt.softplus(math.inf) == math.inf
    assert rt.softplus(-math.inf) == 0.0
    assert math.isnan(rt.softplus(math.nan))
    assert rt.sigmoid(math.inf) == 1.0
    assert rt.sigmoid(-math.inf) == 0.0
    assert math.isnan(rt.sigmoid(math.nan))


# the primitives that call exp or log also exist in the data's precision, NAME_as(..., like)
PRECISION_POINTS = {
    "softplus": ([(z,) for z in Z + [-math.inf, math.inf, math.nan]], mp_softplus),
    "sigmoid": ([(z,) for z in Z + [-math.inf, math.inf, math.nan]], mp_sigmoid),
    "xlogy": ([(2.0, 3.0), (0.0, 0.0), (0.5, 1e-30), (1.0, 0.0), (-3.0, 7.5)],
              lambda x, y: 0.0 if x == 0 else float(x * mpmath.log(y)) if y > 0 else -math.inf),
    "bce_term": ([(0.3, 0.7), (0.01, 0.5), (0.999, 0.2), (0.0, 1.0), (1.0, 0.0)],
                 lambda x, y: float(min(100, -mpmath.log(x) if x > 0 else 100) * y
                                    + (1 - y) * min(100, -mpmath.log1p(-x) if x < 1 else 100))),
    "logaddexp": ([(1.0, 2.0), (-30.0, 25.0), (-math.inf, 0.5), (math.inf, 1.0)],
                  lambda x, y: float(mpmath.log(mpmath.exp(x) + mpmath.exp(y))) if math.isfinite(max(x, y)) else max(x, y)),
    "logsumexp3": ([(1.0, 2.0, -3.0), (-30.0, 25.0, 24.0), (-math.inf, -math.inf, 0.5)],
                   lambda x, y, w: float(mpmath.log(mpmath.exp(x) + mpmath.exp(y) + mpmath.exp(w)))),
    "softplus_of": ([(z, math.exp(-abs(z))) for z in Z] + [(math.inf, 0.0), (-math.inf, 0.0), (math.nan, math.nan)],
                    lambda z, e: math.nan if math.isnan(z) else max(z, 0.0) + float(mpmath.log1p(e))),
}


def twin_caller(twin, arity):
    """A jitted call(args, like) of a helper's twin; x / 0 is inf (the kernels' error model)."""
    import numba

    return numba.njit(error_model="numpy")({
        1: lambda args, like: twin(args[0], like),
        2: lambda args, like: twin(args[0], args[1], like),
        3: lambda args, like: twin(args[0], args[1], args[2], like),
    }[arity])


def test_every_transcendental_primitive_has_a_precision_twin():
    assert {p.NUMBA.name for p in P.PRIMITIVES if p.NUMBA.transcendental} == set(PRECISION_POINTS)


# every primitive also exists wholly in the data's precision and type, NAME_in(..., like), for
# the kernels of a spec with float32_arithmetic
DATA_PRECISION_POINTS = {
    **PRECISION_POINTS,
    "ratio": ([(1.0, 3.0), (-2.5, 0.1), (0.0, 0.0), (1.0, 0.0)], lambda a, b: a / b if b else math.nan if a == 0 else math.copysign(math.inf, a)),
    "clamp_min_st": ([(0.3, 0.5), (0.7, 0.5), (math.nan, 0.5), (-math.inf, 1e-6)], lambda v, lo: lo if (v < lo or lo != lo) else v),
    "indicator": ([(True,), (False,)], lambda c: 1.0 if c else 0.0),
    "clamp_min_ad": ([(0.3, 0.5), (0.7, 0.5), (math.nan, 0.5)], lambda z, lo: lo if (z < lo or lo != lo) else z),
    "minimum": ([(0.3, 0.5), (2.0, -1.0), (math.nan, 1.0)], lambda a, b: a if (a < b or a != a) else b),
    "peak": ([(1.5, 1.5), (1.0, 2.0), (math.nan, 2.0)], lambda t, m: 1.0 if (t == m or t != t) else 0.0),
    "abs_pow": ([(2.0, 3.0), (-1.5, 0.5), (0.0, 2.0)], lambda x, p: float(mpmath.power(abs(x), p))),
    "norm_root": ([(4.0, 2.0), (8.0, 3.0), (0.0, 2.0)], lambda v, p: float(mpmath.power(v, 1 / mpmath.mpf(p)))),
    "two_forms": ([(0.25, 7.0)], lambda v, d: v),
    "where": ([(True, 0.25, 7.0), (False, 0.25, 7.0)], lambda c, a, b: a if c else b),
    "sigmoid_of": ([(z, math.exp(-abs(z))) for z in Z] + [(math.inf, 0.0), (-math.inf, 0.0), (math.nan, math.nan)],
                   lambda z, e: math.nan if math.isnan(z) else float(1 / (1 + mpmath.mpf(e)) if z >= 0 else e / (1 + mpmath.mpf(e)))),
}


def test_every_primitive_has_a_data_precision_twin():
    assert {p.NUMBA.name for p in P.PRIMITIVES} == set(DATA_PRECISION_POINTS)


@pytest.mark.parametrize(
    "suffix,name", [("_as", n) for n in sorted(PRECISION_POINTS)] + [("_in", n) for n in sorted(DATA_PRECISION_POINTS)]
)
def test_precision_twins(suffix, name):
    """float64 data: the float64 helper bit for bit; float32 data: within 4 float32 ulp of the
    exact value at float32 arguments (the kernels' float32 path), and the same inf and nan;
    NAME_as returns a float64, NAME_in a float32 (one float64 constant in it would widen the
    arithmetic of a float32_arithmetic kernel)."""
    import numba

    rt = runtime()
    points, exact = (PRECISION_POINTS if suffix == "_as" else DATA_PRECISION_POINTS)[name]
    call, plain = twin_caller(getattr(rt, name + suffix), len(points[0])), getattr(rt, name)
    for args in points:
        got64 = call(args, np.zeros(1))
        assert got64 == plain(*args) or (math.isnan(got64) and math.isnan(plain(*args))), (name, args)
        with np.errstate(over="ignore"):  # 1e300 rounds to inf in float32
            # NAME_in gets float32 arguments, NAME_as float64 ones holding float32 values: each as
            # the kernels call it (float32 or float64 arithmetic)
            rounded = tuple(v if isinstance(v, bool) else np.float32(v) if suffix == "_in" else float(np.float32(v))
                            for v in args)
        got32 = call(rounded, np.zeros(1, np.float32))
        (compiled,) = [sig for sig in call.nopython_signatures if sig.args[1].dtype == numba.float32
                       and sig.args[0] == numba.typeof(rounded)]
        assert compiled.return_type == (numba.float32 if suffix == "_in" else numba.float64), (name, args)
        reference = exact(*(v if isinstance(v, bool) else float(v) for v in rounded))
        if math.isnan(reference) or math.isinf(reference) or reference == 0.0:
            assert got32 == reference or (math.isnan(got32) and math.isnan(reference)), (name, args, got32)
        else:
            tolerance = 4 * float(np.spacing(np.float32(abs(reference))))
            assert abs(float(got32) - reference) <= tolerance, (name, args, got32, reference)


@pytest.mark.parametrize("primitive", sorted(P.STAGED, key=lambda p: p.__name__))
def test_staged_forms_are_their_primitives(primitive):
    """NAME_of(z, exp(-|z|)) is NAME(z) bit for bit, in every precision, infinities and nan
    included (the kernels stage the exponential: lower.stage_exponentials); never differentiated."""
    rt = runtime()
    staged = P.STAGED[primitive]
    whole, part = primitive.NUMBA.name, staged.NUMBA.name
    suffixes = ["", "_in"] + (["_as"] if staged.NUMBA.transcendental else [])
    for z in Z + [-math.inf, math.inf, math.nan] + [-v for v in Z]:
        for like in (np.zeros(1), np.zeros(1, np.float32)):
            with np.errstate(over="ignore"):  # 1e300 rounds to inf in float32
                zz = like.dtype.type(z) if like.dtype == np.float32 else z
            e = like.dtype.type(twin_caller(rt.exp_in, 1)((-abs(zz),), like))  # as the scratch holds it
            for suffix in suffixes:
                if not suffix and like.dtype == np.float32:
                    continue
                expected = (getattr(rt, whole + suffix)(zz, like) if suffix else getattr(rt, whole)(zz))
                got = (twin_caller(getattr(rt, part + suffix), 2)((zz, e), like) if suffix else getattr(rt, part)(zz, e))
                assert got == expected or (math.isnan(got) and math.isnan(expected)), (part + suffix, z, got, expected)
    with pytest.raises(TypeError, match="after differentiation"):
        sympy.diff(staged(a, b), a)


def test_xlogy_helper():
    rt = runtime()
    assert rt.xlogy(0.0, 0.0) == 0.0
    assert rt.xlogy(0.0, math.inf) == 0.0
    assert math.isnan(rt.xlogy(0.0, math.nan))
    assert rt.xlogy(2.0, 3.0) == pytest.approx(2 * math.log(3.0), rel=1e-15)
    assert rt.xlogy(1.0, 0.0) == -math.inf
    assert math.isnan(rt.xlogy(1.0, -1.0))


def test_bce_term_helper():
    rt = runtime()
    assert rt.bce_term(0.0, 0.0) == 0.0
    assert rt.bce_term(1.0, 1.0) == 0.0
    assert rt.bce_term(0.0, 1.0) == 100.0  # log clamped at -100
    assert rt.bce_term(1.0, 0.0) == 100.0
    assert rt.bce_term(1e-50, 1.0) == 100.0
    for x, y in [(0.3, 0.7), (0.01, 0.5), (0.999, 0.2), (1e-10, 1.0)]:
        exact = -(y * mpmath.log(x) + (1 - y) * mpmath.log1p(-mpmath.mpf(x)))
        assert rt.bce_term(x, y) == pytest.approx(float(exact), rel=1e-14)


def test_other_helpers():
    rt = runtime()
    assert rt.clamp_min_st(-1.0, 0.5) == 0.5
    assert rt.clamp_min_st(2.0, 0.5) == 2.0
    assert math.isnan(rt.clamp_min_st(math.nan, 0.5))  # nan propagates, as torch's clamp
    assert math.isnan(rt.ratio(0.0, 0.0))
    assert rt.ratio(1.0, 4.0) == 0.25
    assert rt.indicator(True) == 1.0 and rt.indicator(False) == 0.0
    assert rt.where(True, 1.0, 2.0) == 1.0 and rt.where(False, 1.0, 2.0) == 2.0
    assert rt.two_forms(1.0, 2.0) == 1.0


def test_pair_helpers_and_torch_conventions():
    """The norm helpers, and torch's subgradients: |x|^p masked at x == 0, the root masked where
    the norm is 0, minimum's gradient split at a tie, peak marking maxima and nan terms."""
    rt = runtime()
    assert rt.abs_pow(-2.0, 3.0) == 8.0 and rt.norm_root(9.0, 2.0) == 3.0 and rt.norm_root(8.0, 3.0) == pytest.approx(2.0)
    assert rt.minimum(1.0, 2.0) == 1.0 and math.isnan(rt.minimum(math.nan, 2.0)) and math.isnan(rt.minimum(1.0, math.nan))
    assert rt.peak(2.0, 2.0) == 1.0 and rt.peak(1.0, 2.0) == 0.0 and rt.peak(math.nan, 2.0) == 1.0
    assert sympy.diff(P.abs_pow(a, sympy.Rational(1, 2)), a).subs(a, 0) == 0
    assert sympy.diff(P.norm_root(a, 2), a).subs(a, 0) == 0
    tie = sympy.diff(P.minimum(a, b), a).subs({a: 1, b: 1})
    assert tie == sympy.Rational(1, 2) and sympy.diff(P.minimum(a, b), b).subs({a: 1, b: 1}) == tie
    assert sympy.diff(P.minimum(a, b), a).subs({a: 2, b: 1}) == 0


def test_two_forms_prints_its_value_form_in_parentheses():
    from compiler.printer import to_code

    assert to_code(sympy.Symbol("w") * P.two_forms(a + b, a * b)) == "w*(a + b)"


# ---------------------------------------------------------------------------------------------
# the runtime's vectorizable exp / log / log1p (documented: at most 2 ulp, libm's special values)
# ---------------------------------------------------------------------------------------------

def _ulps(got, exact):
    exact = float(exact)
    if exact == 0.0:
        return 0.0 if got == 0.0 else math.inf
    return abs(got - exact) / math.ulp(exact)


FAST = {
    "fast_exp": (math.exp, mpmath.exp, [-746.0, -745.1, -708.5, -100.0, -1.0, -1e-300, 0.0, 1e-300, 0.5, 1.0,
                                         2.5, 88.7, 100.0, 709.7]),
    "fast_log": (math.log, mpmath.log, [5e-324, 1e-310, 2.2250738585072014e-308, 1e-30, 0.5, 0.9999999, 1.0,
                                         1.0000001, 2.0, 10.0, 1e30, 1.7976931348623157e308]),
    "fast_log1p": (math.log1p, mpmath.log1p, [-0.9999999, -0.5, -0.4, -1e-10, -1e-300, 0.0, 1e-300, 1e-10, 0.3,
                                               0.99999, 1.0, 3.0, 1e30]),
}


@pytest.mark.parametrize("name", list(FAST))
def test_fast_functions_within_two_ulp(name):
    rt = runtime()
    if not hasattr(rt, name):
        pytest.skip(f"the runtime has no {name}")
    fn = getattr(rt, name)
    libm, exact, points = FAST[name]
    rng = np.random.default_rng(5)
    lo, hi = min(points), max(points)
    if name == "fast_exp":
        points = points + list(rng.uniform(-740, 705, 2000))
    elif name == "fast_log":
        points = points + list(10.0 ** rng.uniform(-300, 300, 2000)) + list(rng.uniform(0.5, 2, 1000))
    else:
        points = points + list(rng.uniform(-0.99, 5, 2000)) + list(10.0 ** rng.uniform(-20, 20, 1000))
    worst = max((_ulps(fn(float(p)), exact(mpmath.mpf(float(p)))), float(p)) for p in points)
    assert worst[0] <= 2.0, f"{name}({worst[1]!r}) is {worst[0]} ulp off"


@pytest.mark.parametrize("name", list(FAST))
def test_fast_functions_special_values(name):
    rt = runtime()
    if not hasattr(rt, name):
        pytest.skip(f"the runtime has no {name}")
    fn = getattr(rt, name)
    libm = FAST[name][0]
    for value in [math.inf, -math.inf, math.nan, 0.0, -0.0, -1.0, -2.0, 1e308, -1e308, 800.0, -800.0]:
        try:
            expected = libm(value)
        except (ValueError, OverflowError) as error:
            # Python's math raises where C's libm returns inf / -inf / nan
            expected = {"fast_exp": math.inf, "fast_log": -math.inf if value == 0 else math.nan,
                        "fast_log1p": -math.inf if value == -1.0 else math.nan}[name]
            del error
        got = fn(value)
        if math.isnan(expected):
            assert math.isnan(got), f"{name}({value}) = {got}, expected nan"
        else:
            assert got == expected or _ulps(got, expected) <= 2, f"{name}({value}) = {got}, expected {expected}"
