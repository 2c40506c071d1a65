"""The kernels on every thread numba has: large inputs (many chunks) give results identical to the
single-threaded run (the runtime's chunks depend only on the element count) and equal to torch."""
from __future__ import annotations

import numba
import numpy as np
import pytest

import support
from generated import _runtime as rt
from support import LOSSES, make_args, run_ours, run_torch


@pytest.fixture
def all_threads():
    before = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    yield numba.get_num_threads()
    numba.set_num_threads(before)


def big_args(spec, dtype, reduction, rng):
    if support.kind(spec) == "recurrence":  # many samples, one per parallel iteration
        return make_args(spec, {}, "big", dtype, rng, reduction)
    args = make_args(spec, {}, "vector", dtype, rng, reduction)
    n = 200_003  # several chunks of CHUNK_ELEMENTS, and a ragged last one
    out = {}
    for k, v in args.items():
        if isinstance(v, np.ndarray) and support.is_pair(spec):  # rows of 5 features; 'row' tensors one per row
            features = args[next(iter(args))].shape[-1]
            out[k] = np.resize(v, (n // features,) + v.shape[1:] if v.ndim == 2 else (n // features,))
        elif isinstance(v, np.ndarray):
            if support.is_row(spec):
                out[k] = np.resize(v, (n // 50,) + v.shape) if v.ndim else np.resize(v, (n // 50,))
            else:
                out[k] = np.resize(v, n)
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("loaded", LOSSES, ids=support.loss_id)
def test_threads_do_not_change_results(loaded, dtype, reduction, all_threads, rng):
    spec = loaded.spec
    args = big_args(spec, dtype, reduction, rng)
    many = run_ours(spec, args, "_value_and_grad")
    if many.error is not None:
        theirs = run_torch(spec, args, want_grads=False)
        assert theirs.error is not None, f"losscc raises {many.error!r} where torch accepts"
        pytest.skip(f"torch raises {theirs.error!r} on this sample too")
    numba.set_num_threads(1)
    one = run_ours(spec, args, "_value_and_grad")
    numba.set_num_threads(all_threads)
    np.testing.assert_array_equal(many.value[0], one.value[0])
    for a, b in zip(many.value[1], one.value[1]):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)
    theirs = run_torch(spec, args, grad_output=lambda v: np.ones(v.shape, v.dtype))
    support.assert_close(many.value[0], theirs.value, dtype, f"{spec.name} {reduction} on {all_threads} threads",
                         support.overflow_mask(spec, theirs.value, many.value[0]))


@pytest.mark.parametrize("loaded", [loaded for loaded in LOSSES if support.kind(loaded.spec) == "recurrence"],
                         ids=support.loss_id)
def test_recurrences_run_small_batches_on_one_thread_and_big_ones_in_parallel(loaded, all_threads, monkeypatch, rng):
    """The test above compares thread counts only if its batch takes the parallel path."""
    chunks = []
    run = rt.run
    monkeypatch.setattr(rt, "run", lambda kernel, nchunks, *args: chunks.append(nchunks) or run(kernel, nchunks, *args))
    for family, expected in (("matrix", 1), ("big", 2)):
        chunks.clear()
        args = make_args(loaded.spec, {}, family, np.float64, rng, "sum")
        assert run_ours(loaded.spec, args, "_value_and_grad").error is None
        assert chunks == [expected], family
        assert numba.get_num_threads() == all_threads


@pytest.mark.parametrize("loaded", [loaded for loaded in LOSSES if support.kind(loaded.spec) in ("elementwise", "row")],
                         ids=support.loss_id)
def test_small_calls_run_on_one_thread_and_restore_the_thread_count(loaded, all_threads, rng):
    """A single chunk runs with numba's thread count set to 1 for the call (no pool wake-up);
    the caller's setting must survive it, also when the call raises."""
    spec = loaded.spec
    args = make_args(spec, {}, "matrix", np.float64, rng, "sum")
    small = run_ours(spec, args, "_value_and_grad")
    assert small.error is None, small.error
    assert numba.get_num_threads() == all_threads
    numba.set_num_threads(1)
    alone = run_ours(spec, args, "_value_and_grad")
    numba.set_num_threads(all_threads)
    np.testing.assert_array_equal(small.value[0], alone.value[0])
    bad = dict(args, reduction="no such reduction")
    assert run_ours(spec, bad, "_value_and_grad").error is not None
    assert numba.get_num_threads() == all_threads


def _lead_bytes(array):
    """Bytes of the array's own allocation that come before its first element."""
    root = array
    while root.base is not None:
        root = root.base
    return array.__array_interface__["data"][0] - root.__array_interface__["data"][0]


@pytest.mark.parametrize("loaded", [loaded for loaded in LOSSES if support.kind(loaded.spec) in ("elementwise", "row")],
                         ids=support.loss_id)
def test_kernel_outputs_start_past_any_other_array(loaded, rng):
    """LLVM runs a vectorized loop scalar where an input starts less than 256 bytes before the
    array it stores to, and the scalar loop adds the loss in another order (observed: the last
    bit of small sums depended on where malloc had put a fresh gradient). Every gradient and
    per-element loss a kernel writes is allocated with 512 bytes of its own ahead of it."""
    args = make_args(loaded.spec, {}, "matrix", np.float64, rng, "none")
    outcome = run_ours(loaded.spec, args, "_value_and_grad")
    assert outcome.error is None, outcome.error
    value, grads = outcome.value
    written = [g for g in grads if g is not None] + ([value] if np.ndim(value) else [])
    assert written
    for array in written:
        assert _lead_bytes(array) >= rt.OUTPUT_LEAD_BYTES, loaded.spec.name


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("loaded", [loaded for loaded in LOSSES if support.kind(loaded.spec) in ("row", "pair")],
                         ids=support.loss_id)
def test_rows_done_two_at_a_time_equal_rows_done_alone(loaded, dtype, rng):
    """Row kernels run small rows two at a time (rt.pair_rows). Rows [A, B, A, A, B] in one
    chunk run as (A, B), (A, A), B: A first and second of a pair, B second and alone, all with
    the same bits."""
    from compiler import lang

    args = make_args(loaded.spec, {}, "matrix", dtype, rng, "none")
    per_row = {p.name for p in loaded.spec.params
               if isinstance(p, lang.ClassTarget) or getattr(p, "layout", None) in ("rows", "row")}
    for name in per_row & set(args):
        array = args[name]
        args[name] = np.ascontiguousarray(array[[0, 1, 0, 0, 1]])
    first = args[next(iter(args))]
    assert rt.pair_rows(first.shape[-1], first)  # the first two rows are paired
    outcome = run_ours(loaded.spec, args, "_value_and_grad")
    assert outcome.error is None, outcome.error
    value, grads = outcome.value
    assert value.shape == (5,)
    for same in ([0, 2, 3], [1, 4]):
        for result in [value] + [g for g in grads if g is not None]:
            assert len({result[i].tobytes() for i in same}) == 1, (loaded.spec.name, same, result[same])
