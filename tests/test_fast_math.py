"""The vectorizable exp / log / log1p of the generated runtime against a 120-bit reference:
at most 2 ulp over the whole float64 range, and libm's results for inf, nan, zeros, negatives
and denormals. They replace math.exp/log/log1p in every kernel, so this is the accuracy floor of
every loss."""
from __future__ import annotations

import math

import mpmath
import numba
import numpy as np
import pytest

from generated import _runtime as rt

mpmath.mp.prec = 120
SAMPLES = 4000
FASTMATH = dict(fastmath=rt.FASTMATH, error_model="numpy")  # as in the kernels: reassociation on


def _vectorized(helper):
    @numba.njit(**FASTMATH)
    def apply(values, out):
        for i in range(values.shape[0]):
            out[i] = helper(values[i])

    return apply


FUNCTIONS = {
    "fast_exp": (_vectorized(rt.fast_exp), mpmath.exp, np.exp),
    "fast_log": (_vectorized(rt.fast_log), mpmath.log, np.log),
    "fast_log1p": (_vectorized(rt.fast_log1p), mpmath.log1p, np.log1p),
}
rng = np.random.default_rng(20261128)
RANGES = {
    "fast_exp": [
        rng.uniform(-745.2, -708.0, SAMPLES),  # denormal results
        rng.uniform(-708.0, 709.78, SAMPLES),
        rng.uniform(-1.0, 1.0, SAMPLES),
        rng.uniform(-1e-8, 1e-8, SAMPLES),
        rng.uniform(700.0, 709.78, SAMPLES),
        # where a rounding of exp(-k ln2_lo) as a separate factor made fast_exp 2.6-3 ulp off
        np.array([-179.60985286567018, -162.29199969421836]),
        rng.uniform(-200.0, -150.0, SAMPLES),
        # the reduced argument's whole range, and its edges: the fitted polynomial's
        rng.uniform(-0.35, 0.35, SAMPLES),
        np.array([-0.34657359027997264, -0.3465735902799727, 0.34657359027997264, 0.3465735902799727]),
        -np.exp(rng.uniform(-40.0, 3.0, SAMPLES)),  # a log-sum-exp's terms minus the largest (recurrences)
    ],
    "fast_log": [
        np.exp(rng.uniform(-744.0, 709.0, SAMPLES)),
        rng.uniform(0.5, 2.0, SAMPLES),
        rng.uniform(1 - 1e-6, 1 + 1e-6, SAMPLES),
        rng.uniform(1.414, 1.4143, SAMPLES),  # around the reduction's switch: the fit's edge, |s| = 0.1716
        rng.uniform(0.0, 1.0, SAMPLES) * 2.2250738585072014e-308,  # denormal inputs
        np.exp(rng.uniform(700.0, 709.7, SAMPLES)),
    ],
    "fast_log1p": [
        rng.uniform(-1e-6, 1e-6, SAMPLES),
        rng.uniform(-0.999, 3.0, SAMPLES),
        -1.0 + np.exp(rng.uniform(-36.0, -1.0, SAMPLES)),  # near -1
        np.exp(rng.uniform(1.0, 709.0, SAMPLES)),
        np.exp(rng.uniform(-744.0, -20.0, SAMPLES)) * rng.choice([-1.0, 1.0], SAMPLES),
        rng.uniform(-0.45, -0.35, SAMPLES),  # around the switch between the two methods
        rng.uniform(0.95, 1.05, SAMPLES),
    ],
}
SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, -5e-324, 1.0, -1.0, -2.0,
                     709.78, 709.79, -745.13, -745.14, 1e308, 2.2250738585072014e-308])


def _reference(mp_function, values):
    return np.array([float(mp_function(mpmath.mpf(float(v)))) for v in values])


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_within_two_ulp_over_the_float_range(name):
    fast, exact, _ = FUNCTIONS[name]
    worst = 0.0
    for values in RANGES[name]:
        got = np.empty_like(values)
        fast(values, got)
        reference = _reference(exact, values)
        finite = np.isfinite(reference) & (reference != 0)
        ulps = np.abs(got[finite] - reference[finite]) / np.spacing(np.abs(reference[finite]))
        worst = max(worst, float(ulps.max()))
        # where the true value rounds to zero or overflows, libm's answer is the rounded one
        np.testing.assert_array_equal(got[~finite], reference[~finite])
    assert worst <= 2.0, f"{name}: {worst} ulp"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_special_values_as_libm(name):
    fast, _, libm = FUNCTIONS[name]
    _assert_special_values_as_libm(name, fast, libm, SPECIALS)


def _assert_special_values_as_libm(name, fast, libm, specials):
    got = np.empty_like(specials)
    fast(specials, got)
    with np.errstate(all="ignore"):
        expected = libm(specials)
    for value, ours, theirs in zip(specials, got, expected):
        if math.isnan(theirs):
            assert math.isnan(ours), (name, value, ours)
        elif theirs == 0.0 or math.isinf(theirs) or abs(theirs) < 2.3e-308:
            assert ours == theirs, (name, value, ours, theirs)  # exact zeros, infinities, denormals
        else:
            assert abs(ours - theirs) <= 2 * np.spacing(abs(theirs)), (name, value, ours, theirs)


# ---------------------------------------------------------------------------------------------
# float32 exp, used for float32 data (rt.exp_as dispatches on the kernel's array dtype)
# ---------------------------------------------------------------------------------------------

def _float32_ulps(got, exact):
    """|got - exact| in units of the float32 spacing at exact (float64 exact values)."""
    with np.errstate(over="ignore"):
        spacing = np.spacing(np.abs(exact.astype(np.float32))).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


def test_fast_exp32_within_two_ulp_of_float32():
    generator = np.random.default_rng(32)
    values = np.concatenate([
        generator.uniform(-103.97, -87.3, 200_000),  # denormal results
        generator.uniform(-87.3, 88.72, 1_000_000),
        generator.uniform(-1.0, 1.0, 200_000),
        generator.uniform(-1e-6, 1e-6, 10_000),
    ]).astype(np.float32)
    got = np.empty_like(values)
    _vectorized(rt.fast_exp32)(values, got)
    exact = np.exp(values.astype(np.float64))  # within 1 ulp of float64: exact at float32's scale
    worst = _float32_ulps(got, exact).max()
    assert worst <= 2.0, f"fast_exp32 is {worst:.3f} ulp from exp"


def test_fast_exp32_special_values_as_libm():
    values = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 88.72283, 88.7229, 89.0, 1e30, -103.972,
                       -103.9721, -104.0, -1e30, np.finfo(np.float32).tiny, -np.finfo(np.float32).tiny],
                      dtype=np.float32)
    got = np.empty_like(values)
    _vectorized(rt.fast_exp32)(values, got)
    with np.errstate(over="ignore"):
        libm = np.exp(values)  # numpy's float32 exp: inf above 88.72, 0 below -103.97
    exact = np.exp(values.astype(np.float64))
    for value, mine, theirs, correct in zip(values, got, libm, exact):
        if np.isnan(theirs) or np.isinf(theirs) or theirs == 0.0:
            assert mine == theirs or (np.isnan(mine) and np.isnan(theirs)), (value, mine, theirs)
        else:
            assert _float32_ulps(np.array([mine]), np.array([correct]))[0] <= 2.0, (value, mine, correct)


def test_shifted_exp32_within_two_ulp_where_normal_and_zero_below():
    """exp for a log-sum-exp's shifted terms (x <= 0): fast_exp32's bits wherever expf is
    normal, 0 (never garbage) where it is not, nan for nan."""
    generator = np.random.default_rng(33)
    normal = np.concatenate([
        generator.uniform(-87.33, 0.0, 1_000_000),
        generator.uniform(-1e-6, 0.0, 10_000),
        np.array([0.0, -0.0, -87.33, -1.0, -0.5]),
    ]).astype(np.float32)
    got = np.empty_like(normal)
    _vectorized(rt.shifted_exp32)(normal, got)
    worst = _float32_ulps(got, np.exp(normal.astype(np.float64))).max()
    assert worst <= 2.0, f"shifted_exp32 is {worst:.3f} ulp from exp"
    general = np.empty_like(normal)
    _vectorized(rt.fast_exp32)(normal, general)
    assert np.array_equal(got, general), normal[got != general][:5]
    below = np.concatenate([generator.uniform(-120.0, -87.34, 100_000),
                            np.array([-88.0, -88.1, -104.0, -1e30, -np.inf])]).astype(np.float32)
    got = np.empty_like(below)
    _vectorized(rt.shifted_exp32)(below, got)
    exact = np.exp(below.astype(np.float64))
    # each result is 0 or the true value to 2 ulp: a denormal kept or flushed, never more
    assert np.all((got == 0.0) | (np.abs(got - exact) <= 2 * np.spacing(np.float32(0.0)))), got[got != 0.0][:5]
    assert np.all(got[below < -88.0] == 0.0)
    nan = np.full(3, np.nan, dtype=np.float32)
    _vectorized(rt.shifted_exp32)(nan, got[:3])
    assert np.all(np.isnan(got[:3]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_is_the_maximum_and_carries_nan(dtype):
    row_max = numba.njit(lambda row: rt.row_max(row))
    generator = np.random.default_rng(34)
    for size in (0, 1, 7, 16, 33, 1000):
        row = (generator.standard_normal(size) * 10.0 ** generator.integers(-40, 30, size)).astype(dtype)
        expected = row.max() if size else -np.inf
        assert row_max(row) == expected
    specials = np.array([-np.inf, -0.0, 0.0, -1e-45, np.inf], dtype=dtype)
    assert row_max(specials) == np.inf and row_max(specials[:2]) == 0.0 and row_max(specials[:1]) == -np.inf
    strided = np.arange(20, dtype=dtype).reshape(4, 5)[:, 2]  # a column: a non-contiguous row
    assert row_max(strided) == 17.0
    with_nan = np.array([1.0, np.nan, 3.0], dtype=dtype)
    assert np.isnan(row_max(with_nan))  # then exp(x - max) is nan everywhere, as torch's softmax


# ---------------------------------------------------------------------------------------------
# float32 log and log1p, used for float32 data (rt.log_as / rt.log1p_as)
# ---------------------------------------------------------------------------------------------

FLOAT32_LOGS = {
    "fast_log32": (rt.fast_log32, np.log, lambda g: [
        np.exp(g.uniform(-103.0, 88.7, 1_000_000)),  # the whole range, denormal inputs included
        g.uniform(0.5, 2.0, 300_000),
        g.uniform(1 - 1e-5, 1 + 1e-5, 100_000),
        g.uniform(0.0, 1.0, 100_000) * np.finfo(np.float32).tiny,
    ]),
    "fast_log1p32": (rt.fast_log1p32, np.log1p, lambda g: [
        g.uniform(-1e-6, 1e-6, 100_000),
        g.uniform(-0.999, 3.0, 1_000_000),
        -1.0 + np.exp(g.uniform(-16.0, -1.0, 100_000)),  # near -1
        np.exp(g.uniform(1.0, 88.0, 100_000)),
        np.exp(g.uniform(-100.0, -10.0, 100_000)) * g.choice([-1.0, 1.0], 100_000),
        g.uniform(-0.45, -0.35, 100_000),  # around the switch between the two methods
        g.uniform(0.95, 1.05, 100_000),
    ]),
}


@pytest.mark.parametrize("name", sorted(FLOAT32_LOGS))
def test_float32_logs_within_two_ulp_of_float32(name):
    helper, exact_function, ranges = FLOAT32_LOGS[name]
    values = np.concatenate(ranges(np.random.default_rng(3232))).astype(np.float32)
    values = values[values > (0.0 if name == "fast_log32" else -1.0)]
    got = np.empty_like(values)
    _vectorized(helper)(values, got)
    exact = exact_function(values.astype(np.float64))  # float64: exact at float32's scale
    nonzero = exact != 0.0
    worst = _float32_ulps(got[nonzero], exact[nonzero]).max()
    assert worst <= 2.0, f"{name} is {worst:.3f} ulp from the float64 reference"
    assert np.all(got[~nonzero] == 0.0)


@pytest.mark.parametrize("name", sorted(FLOAT32_LOGS))
def test_float32_logs_special_values_as_libm(name):
    helper, _, _ = FLOAT32_LOGS[name]
    libm = np.log if name == "fast_log32" else np.log1p
    f32 = np.finfo(np.float32)
    values = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, f32.tiny, 1.0, -1.0, -2.0,
                       f32.max, -f32.max], dtype=np.float32)
    got = np.empty_like(values)
    _vectorized(helper)(values, got)
    with np.errstate(all="ignore"):
        expected = libm(values)  # numpy's float32 log / log1p
    for value, mine, theirs in zip(values, got, expected):
        if np.isnan(theirs) or np.isinf(theirs) or theirs == 0.0:
            assert mine == theirs or (np.isnan(mine) and np.isnan(theirs)), (value, mine, theirs)
        else:
            assert abs(float(mine) - float(theirs)) <= 2 * float(np.spacing(np.abs(theirs))), (value, mine, theirs)


@pytest.mark.parametrize("name", ["exp", "log", "log1p", "log_of_unit"])
def test_transcendentals_follow_the_array_dtype(name):
    """float64 data: the float64 helper, bit for bit; float32 data: the float32 helper on the
    argument rounded to float32, returned as a float64 by NAME_as (float64 arithmetic) and as the
    float32 itself by NAME_in (float32_arithmetic kernels compute on in float32)."""
    as_float64, in_data_type = getattr(rt, f"{name}_as"), getattr(rt, f"{name}_in")

    @numba.njit(**FASTMATH)
    def apply(x, like):
        return as_float64(x, like), in_data_type(x, like)

    float64_twin = {"exp": rt.fast_exp, "log": rt.fast_log, "log1p": rt.fast_log1p, "log_of_unit": rt.log_of_unit}[name]
    float32_twin = {"exp": rt.fast_exp32, "log": rt.fast_log32, "log1p": rt.fast_log1p32,
                    "log_of_unit": rt.log_of_unit32}[name]
    for x in [0.1234567891234, 0.75, 3.3]:
        if name == "log_of_unit" and x > 1.0:
            continue
        assert apply(x, np.zeros(1)) == (float64_twin(x), float64_twin(x))
        expected = float32_twin(np.float32(x))
        assert apply(x, np.zeros(1, np.float32)) == (np.float64(expected), expected)
        assert apply(x, np.zeros(1, np.float32))[0] != apply(x, np.zeros(1))[0]  # the float32 path ran
    (compiled,) = [sig for sig in apply.nopython_signatures if sig.args[1].dtype == numba.float32]
    assert compiled.return_type == numba.types.Tuple((numba.float64, numba.float32))


def test_fitted_polynomials_are_below_their_stated_errors():
    """compiler/series.py's Chebyshev fits, far below the results' precision (2**-53 in
    float64, 2**-24 in float32): the errors its comments state, which chose the term counts."""
    from compiler import series

    stated = {"UNIT64": -62.7, "REDUCED64": -64.8, "UNIT32": -31.2, "REDUCED32": -35.8}
    assert {fit.name: round(fit.error_bits(), 1) for fit in series.FITS} == stated
    assert round(series.exp_error_bits(), 1) == -55.6
