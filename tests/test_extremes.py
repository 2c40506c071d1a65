"""Extremes and kinks: every combination of special values (0 difference, |d| equal to a
beta/delta/margin, +-inf, nan, 1e30, 1e-30, the ends of [0, 1], ...) for every loss, option
combination, reduction and dtype; forward and gradients against torch with nan == nan.

float32: our kernels compute in float64 and round once, so an element may equal either torch's
float32 result or torch's float64 result rounded to float32 (the more accurate answer where
torch's float32 intermediate overflows). Where a spec's notes document a deliberate difference
(soft_margin_loss's stable softplus), the elements where torch overflows and losscc stays
finite are exempt."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import support
from support import (
    DTYPES,
    ClassTarget,
    assert_close_either,
    assert_error_compatible,
    overflow_mask,
    required,
    run_ours,
    run_torch,
)
from compiler import lang

SPECIALS = {
    "real": [0.0, 1.0, -1.0, 2.0, -0.5, np.inf, -np.inf, np.nan, 1e30, -1e30, 1e-30, -1e-30],
    "any": [0.0, 1.0, -1.0, 2.0, -0.5, np.inf, -np.inf, np.nan, 1e30, -1e30, 1e-30, -1e-30],
    "unit": [0.0, 1e-30, 1e-12, 0.25, 0.5, 1.0 - 1e-7, 1.0],
    "prob": [0.0, 1e-30, 1e-12, 0.25, 0.5, 1.0 - 1e-7, 1.0],
    "positive": [0.0, 1e-30, 1e-6, 0.5, 1.0, 2.0, 1e30, np.inf, np.nan],
    "sign": [1.0, -1.0, 0.0, 2.0],
    "labels": [-1, 0, 1, 2, 3, 4],
}

WEIGHTS = [0.0, 1e-30, 0.5, 1.0, 2.0, 1e30]


def specials(spec, domain, options):
    values = list(SPECIALS[domain])
    if domain in ("real", "any"):  # differences equal to each scalar option: the kinks
        for p in spec.params:
            if isinstance(p, lang.Real):
                v = float(options.get(p.name, p.default))
                values += [v, -v, v / 2]
    return list(dict.fromkeys(values))  # nan != nan: dict keeps one (same object)


def extreme_args(spec, options, dtype, rng, reduction):
    """Arrays covering the product of the special values of every required float argument."""
    args = {}
    if support.is_row(spec):
        arrays = {}
        rows = 24
        for index, p in enumerate(spec.params):
            if isinstance(p, lang.Tensor) and getattr(p, "layout", "rows") == "rows":
                pool = specials(spec, p.domain, options)
                values = np.array([pool[(i * (index + 3) + i // len(pool)) % len(pool)]
                                   for i in range(rows * support.CLASSES)])
                arrays[p.name] = values.reshape(rows, support.CLASSES)
        base = support.make_args(spec, options, "matrix", dtype, rng, reduction)
        shape = (rows, support.CLASSES)
        for k, v in base.items():
            if k in arrays and isinstance(v, np.ndarray) and v.dtype.kind == "f":
                args[k] = arrays[k].astype(dtype)
            elif isinstance(v, np.ndarray) and ClassTarget is not None and any(
                    isinstance(p, ClassTarget) and p.name == k for p in spec.params):
                if v.dtype.kind == "f":  # probabilities
                    pool = SPECIALS["prob"]
                    args[k] = np.resize(np.array(pool), shape).astype(dtype)
                else:
                    args[k] = rng.integers(0, support.CLASSES, size=rows).astype(np.int64)
            elif isinstance(v, np.ndarray) and getattr(_param(spec, k), "layout", "") == "rows":
                args[k] = np.resize(v, shape).astype(v.dtype)
            elif isinstance(v, np.ndarray) and v.dtype.kind in "iu":
                args[k] = np.resize(v, shape).astype(v.dtype)
            else:
                args[k] = v
        return args
    tensors = [p for p in spec.params if isinstance(p, lang.Tensor)]
    given = {p.name: options[p.name] for p in tensors if p.name in options and options[p.name] is not support.PRESENT}
    varied = [p for p in tensors if p.name not in given]
    grid = list(itertools.product(*[specials(spec, p.domain, options) for p in varied]))
    columns = list(zip(*grid)) if grid else []
    n = len(grid)
    for p in spec.params:
        if isinstance(p, lang.Tensor):
            if p.name in given:
                args[p.name] = given[p.name]
            else:
                args[p.name] = np.array(columns[varied.index(p)], dtype=dtype)
        elif isinstance(p, lang.OptionalTensor):
            if options.get(p.name) is support.PRESENT:
                # weights: finite (0, tiny, ordinary, huge); an inf or nan weight is not an extreme
                # of the loss but of its caller
                pool = WEIGHTS
                args[p.name] = np.resize(np.array(pool[::-1]), n).astype(dtype)
        elif isinstance(p, (lang.Real, lang.Flag)) and p.name in options:
            args[p.name] = options[p.name]
        elif isinstance(p, lang.Reduction):
            args[p.name] = reduction
    return args


def _param(spec, name):
    return next((p for p in spec.params if p.name == name), None)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("loaded,options,reduction", support.cases())
def test_extremes(loaded, options, reduction, dtype, rng):
    spec = loaded.spec
    if support.kind(spec) == "recurrence":
        pytest.skip("recurrence losses: zero probabilities, nan and infeasible alignments are in their own test files")
    args = extreme_args(spec, options, dtype, rng, reduction)
    what = f"{spec.name}({support.options_id(options)}, reduction={reduction!r}) {np.dtype(dtype).name} extremes"
    go_holder = {}

    def grad_output(value):
        if "go" not in go_holder:
            go_holder["go"] = np.asarray(rng.uniform(0.5, 1.5, value.shape))
        return go_holder["go"]

    theirs = run_torch(spec, args, grad_output=grad_output)
    mine = run_ours(spec, args)
    if theirs.error is not None:
        assert_error_compatible(theirs.error, mine.error, what)
        pytest.skip(f"torch raises {type(theirs.error).__name__}: {theirs.error} (and so does losscc)")
    assert mine.error is None, f"{what}: torch accepts, losscc raises {type(mine.error).__name__}: {mine.error}"
    wide = run_torch(spec, args, grad_output=grad_output, as_float64=True) if dtype == np.float32 else theirs
    rounded = lambda a: np.asarray(a).astype(dtype)  # noqa: E731

    assert mine.value.dtype == theirs.value.dtype, what
    assert_close_either(mine.value, theirs.value, rounded(wide.value), dtype, f"{what}: forward",
                        overflow_mask(spec, wide.value, mine.value))

    back = run_ours(spec, args, "_backward", grad_output=np.asarray(go_holder["go"], dtype=mine.value.dtype))
    assert back.error is None, f"{what}: backward raises {back.error!r}"
    if theirs.grad_error is not None or wide.grad_error is not None:
        pytest.skip(f"torch's backward raises {theirs.grad_error or wide.grad_error!r}: forward compared")
    names = [p.name for p in required(spec)]
    for name, grad in zip(names, back.value):
        if name not in theirs.grads:
            assert grad is None, f"{what}: gradient of {name} should be None"
            continue
        assert_close_either(grad, theirs.grads[name], rounded(wide.grads[name]), dtype,
                            f"{what}: gradient of {name}", overflow_mask(spec, wide.grads[name], grad))


@pytest.mark.parametrize("loaded", support.LOSSES, ids=support.loss_id)
def test_kinks_in_float64_parity(loaded, rng):
    """A 'none' call whose differences sit exactly on every kink of the spec's scalar options
    (|input - target| == beta, delta, margin, 0), compared with torch exactly."""
    spec = loaded.spec
    if support.is_row(spec):
        pytest.skip("row losses: kinks are covered by test_extremes")
    if support.kind(spec) == "recurrence":
        pytest.skip("recurrence losses have no scalar-option kinks")
    reals = [p for p in spec.params if isinstance(p, lang.Real)]
    tensors = [p for p in spec.params if isinstance(p, lang.Tensor)]
    for options in support.option_combos(spec):
        points = {0.0, 1.0, -1.0}
        for p in reals:
            v = float(options.get(p.name, p.default))
            points |= {v, -v}
        base = np.array(sorted(points))
        args = extreme_args(spec, options, np.float64, rng, "none")
        # input = target + kink for the first two tensors; the rest keep their special grid
        if len(tensors) >= 2 and tensors[0].domain in ("real", "any"):
            second = np.resize(support.sample(tensors[1].domain, (len(base),), np.float64, rng), len(base))
            args[tensors[0].name] = second + base
            args[tensors[1].name] = second
            for p in tensors[2:]:
                args[p.name] = support.sample(p.domain, (len(base),), np.float64, rng)
            for p in spec.params:
                if isinstance(p, lang.OptionalTensor) and p.name in args:
                    args[p.name] = support.sample(p.domain, (len(base),), np.float64, rng)
        from test_parity import check_against_torch

        check_against_torch(spec, args, "none", np.float64, rng, f"{spec.name}({support.options_id(options)}) kinks")
