"""value_and_grad(..., out=...): gradients written into the caller's arrays, checked first."""
from __future__ import annotations

import numpy as np
import pytest

import support
from support import make_args, ours, required, split_args

DTYPES = [np.float32, np.float64]
WITH_OUT = [loaded for loaded in support.LOSSES if loaded.spec.kind in ("elementwise", "row")]


def fresh_call(spec, args, out=None):
    positional, keywords = split_args(spec, args)
    return ours(spec, "_value_and_grad")(*positional, **keywords, **({} if out is None else {"out": out}))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("loaded", WITH_OUT, ids=lambda loaded: loaded.name)
def test_out_arrays_receive_the_gradients(loaded, reduction, dtype, rng):
    spec = loaded.spec
    args = make_args(spec, {}, "matrix", dtype, rng, reduction)
    loss, grads = fresh_call(spec, args)
    # nan-filled: every element the kernel leaves alone would show
    out = tuple(None if g is None else np.full(g.shape, np.nan, dtype=g.dtype) for g in grads)
    before = support.copies(args)
    loss_out, grads_out = fresh_call(spec, args, out)
    support.assert_unchanged(before, args)
    np.testing.assert_array_equal(loss_out, loss)
    for name, mine, theirs, target in zip([p.name for p in required(spec)], grads_out, grads, out):
        if target is None:
            assert mine is None, name
            continue
        assert mine is target, f"{name}: the out array itself is returned"
        np.testing.assert_array_equal(mine, theirs, err_msg=name)


@pytest.mark.parametrize("loaded", WITH_OUT, ids=lambda loaded: loaded.name)
def test_bad_out_is_rejected_before_any_kernel(loaded, rng):
    spec = loaded.spec
    args = make_args(spec, {}, "matrix", np.float64, rng, "sum")
    _, grads = fresh_call(spec, args)
    names = [p.name for p in required(spec)]
    k = next(i for i, g in enumerate(grads) if g is not None)
    good = [None if g is None else np.empty_like(g) for g in grads]

    def with_entry(value):
        return tuple(value if i == k else g for i, g in enumerate(good))

    bad = {
        "too few entries": tuple(good[:-1]),
        "not a tuple": good[k],
        "None for a gradient": with_entry(None),
        "wrong shape": with_entry(np.empty(grads[k].size + 1)),
        "wrong dtype": with_entry(np.empty(grads[k].shape, dtype=np.float32)),
        "not contiguous": with_entry(np.empty(grads[k].shape + (2,))[..., 0]),
        "an input": with_entry(args[names[k]]),
    }
    for reason, out in bad.items():
        with pytest.raises(ValueError):
            fresh_call(spec, args, out)
            pytest.fail(f"out with {reason} was accepted")
    none_entry = next((i for i, g in enumerate(grads) if g is None), None)
    if none_entry is not None:
        out = tuple(np.empty(1) if i == none_entry else g for i, g in enumerate(good))
        with pytest.raises(ValueError, match="must be None"):
            fresh_call(spec, args, out)
