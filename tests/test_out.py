"""value_and_grad(..., out=...): gradients written into the caller's arrays, checked first."""
from __future__ import annotations

import numpy as np
import pytest

import support
from generated import _runtime as rt
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
    others = [i for i, g in enumerate(grads) if g is not None and i != k and g.shape == grads[k].shape
              and g.dtype == grads[k].dtype]
    if others:  # two gradients written into one array would leave only the last
        bad["one array for two entries"] = tuple(good[k] if i == others[0] else g for i, g in enumerate(with_entry(good[k])))
    for reason, out in bad.items():
        with pytest.raises(ValueError):
            fresh_call(spec, args, out)
            pytest.fail(f"out with {reason} was accepted")
    none_entry = next((i for i, g in enumerate(grads) if g is None), None)
    if none_entry is not None:
        out = tuple(np.empty(1) if i == none_entry else g for i, g in enumerate(good))
        with pytest.raises(ValueError, match="must be None"):
            fresh_call(spec, args, out)


@pytest.mark.parametrize("loaded", WITH_OUT, ids=lambda loaded: loaded.name)
def test_out_just_after_a_short_input_changes_nothing(loaded, rng):
    """An out array starting a few elements after a short input (as malloc places small arrays)
    would make the kernel's vectorized loop fail its overlap check and run scalar, adding the
    loss in another order: soft_margin_loss's 'mean' differed in its last bit at 24 of 400 such
    places before the runtime wrote those through a fresh array. The loss and gradients are
    the same bits as without out=, wherever the out array lies."""
    spec = loaded.spec
    args = make_args(spec, {}, "matrix", np.float64, rng, "mean")
    loss, grads = fresh_call(spec, args)
    names = [p.name for p in required(spec)]
    k = next(i for i, g in enumerate(grads) if g is not None and isinstance(args[names[i]], np.ndarray)
             and args[names[i]].dtype == np.float64)
    source, reach = args[names[k]], rt.VECTOR_REACH_BYTES // 8
    assert source.size < reach, "the input must be short enough for an out array to start within reach"
    for gap in range(reach - source.size + 2):
        memory = np.zeros(reach + 2 + grads[k].size)
        moved = memory[:source.size].reshape(source.shape)
        moved[...] = source
        target = memory[source.size + gap:source.size + gap + grads[k].size].reshape(grads[k].shape)
        out = tuple(target if i == k else (None if g is None else np.empty_like(g)) for i, g in enumerate(grads))
        value, written = fresh_call(spec, dict(args, **{names[k]: moved}), out)
        assert value.tobytes() == loss.tobytes(), f"gap of {gap} elements"
        assert written[k] is target
        np.testing.assert_array_equal(written[k], grads[k], err_msg=f"gap of {gap} elements")
