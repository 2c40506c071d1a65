"""Row plans (runtime RowPlan): a repeated plain call of a class-index row loss whose prepare is
signature-only (apart from the targets' range) skips argument handling. It must compute exactly
what the full path computes, check every call's targets, and serve only plain calls. Also the
one-hot gradient's zeroing (runtime zero_rows), which streams large gradients past the cache."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import support
from generated import _runtime as rt
from test_plans import apart, same

ROW_PLANNED = [loaded for loaded in support.LOSSES
               if support.kind(loaded.spec) == "row" and loaded.spec.signature_only_prepare]
OPTIONS = {  # keyword arguments beyond the reduction; label_smoothing -0.5: prepare changes it (no plan)
    "nll_loss": [{}, {"ignore_index": 0}, {"ignore_index": 3}],
    "cross_entropy": [{}, {"ignore_index": 0}, {"label_smoothing": 0.2}, {"label_smoothing": 1.0},
                      {"label_smoothing": -0.5}],
}
SHAPES = [(1, 7), (5, 3), (300, 200)]  # one chunk (run() on one thread), and several


def functions(name):
    module = support.generated_module()
    return getattr(module, name + "_value_and_grad"), getattr(module, name).__globals__["_LOSS"]


@pytest.fixture
def plan_calls(monkeypatch):
    """The calls a RowPlan served (returned a result for)."""
    served = []
    original = rt.RowPlan.value_and_grad

    def counted(self, *arguments):
        result = original(self, *arguments)
        if result is not None:
            served.append(result)
        return result

    monkeypatch.setattr(rt.RowPlan, "value_and_grad", counted)
    return served


def arrays(shape, dtype, rng, ignore_index=-100):
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[::17] = np.inf  # extremes travel through the plan as through the full path
    x.reshape(-1)[5::23] = np.nan
    target = rng.integers(0, shape[1], shape[0]).astype(np.int64)
    target[1::4] = ignore_index
    return x, target


def test_both_class_index_losses_claim_row_plans():
    assert sorted(loaded.name for loaded in ROW_PLANNED) == sorted(OPTIONS)


@pytest.mark.parametrize("with_out", [False, True], ids=["fresh", "out"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, options", [(n, o) for n, cases in OPTIONS.items() for o in cases])
def test_row_plans_equal_the_full_path(name, options, reduction, dtype, shape, with_out, plan_calls, monkeypatch):
    value_and_grad, loss = functions(name)
    rng = np.random.default_rng(support.seed_of(name, options, reduction, shape))
    x, target = arrays(shape, dtype, rng, options.get("ignore_index", -100))
    keywords = dict(options, reduction=reduction)

    def call():
        out = (apart(x.shape, dtype, 7.0), None) if with_out else None
        result = value_and_grad(x, target, **keywords, out=out)
        if with_out:
            assert result[1][0] is out[0]  # written in place, as the full path does
        return result

    monkeypatch.setattr(loss, "signature_only_prepare", False)
    loss.plans.clear()  # the generated value_and_grad looks up plans itself
    full = call()
    monkeypatch.setattr(loss, "signature_only_prepare", True)
    loss.plans.clear()
    results = [call() for _ in range(3)]  # the first call makes the plan, the others use it
    for result in results:
        same(result, full)
    changed = options.get("label_smoothing", 0.0) < 0  # prepare replaced the real: no plan
    assert len(plan_calls) == (0 if changed else 2)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_a_row_plan_checks_every_calls_targets(name, plan_calls):
    value_and_grad, loss = functions(name)
    rng = np.random.default_rng(1)
    x, target = arrays((40, 6), np.float64, rng)
    loss.plans.clear()
    value_and_grad(x, target)
    for bad in (6, -1, 2**40, -101):
        wrong = target.copy()
        wrong[13] = bad
        with pytest.raises(IndexError, match=f"Target {bad} is out of bounds."):
            value_and_grad(x, wrong)
    # every target ignored: the full path's empty mean (nan, a zero gradient), not the plan's
    ignored = np.full_like(target, -100)
    value, (grad, _) = value_and_grad(x, ignored)
    assert np.isnan(value) and not grad.any()
    assert len(plan_calls) == 0
    value_and_grad(x, target)
    assert len(plan_calls) == 1


NOT_PLAIN = {
    "int32 target": lambda x, t, k: ((x, t.astype(np.int32)), k),
    "strided input": lambda x, t, k: ((np.repeat(x, 2, axis=1)[:, ::2], t), k),
    "Fortran input": lambda x, t, k: ((np.asfortranarray(x), t), k),
    "3-d input": lambda x, t, k: ((x[:, :, None], t[:, None]), k),
    "weight": lambda x, t, k: ((x, t), dict(k, weight=np.ones(x.shape[1], x.dtype))),
    "legacy": lambda x, t, k: ((x, t), dict(k, size_average=False)),
    "numpy ignore_index": lambda x, t, k: ((x, t), dict(k, ignore_index=np.int64(-100))),
    "list input": lambda x, t, k: ((x.tolist(), t), k),
    "out as a list of a wrong dtype": lambda x, t, k: ((x, t), dict(k, out=[np.empty(x.shape, np.float32), None])),
    "out overlapping the input": lambda x, t, k: ((x, t), dict(k, out=(x, None))),
}


@pytest.mark.parametrize("case", sorted(NOT_PLAIN))
def test_calls_that_are_not_plain_take_the_full_path(case, plan_calls):
    value_and_grad, loss = functions("nll_loss")
    x, target = arrays((12, 5), np.float64, np.random.default_rng(2))
    loss.plans.clear()
    value_and_grad(x, target)  # the plan of the plain call
    arguments, keywords = NOT_PLAIN[case](x, target, {})
    try:
        value_and_grad(*arguments, **keywords)
    except (ValueError, RuntimeError):  # what the full path says of it (an out= that is the input)
        pass
    assert len(plan_calls) == 0


def misaligned(shape, dtype, offset_bytes):
    """A C-contiguous array whose data starts offset_bytes past a 64-byte boundary, filled with nan."""
    itemsize = np.dtype(dtype).itemsize
    count = int(np.prod(shape))
    block = np.empty(count * itemsize + 128, np.uint8)
    start = (-block.ctypes.data) % 64 + offset_bytes
    array = block[start:start + count * itemsize].view(dtype).reshape(shape)
    array[...] = np.nan
    return array


@pytest.mark.parametrize("offset", [0, 8, 24, 56])
@pytest.mark.parametrize("rows", [(0, 9), (3, 7), (5, 5), (8, 9)])
@pytest.mark.parametrize("width", [1, 13, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_zero_rows_zeroes_exactly_its_rows(dtype, width, rows, offset):
    """Large arrays take the non-temporal path: aligned lines, plain ends; small ones plain stores."""
    itemsize = np.dtype(dtype).itemsize
    for count in (9, rt.STREAM_STORE_BYTES // (width * itemsize) + 9):
        array = misaligned((count, width), dtype, offset)
        lo, hi = rows if rows[1] < 9 else (rows[0], count)
        rt.zero_rows(array, lo, hi)
        expected = np.full_like(array, np.nan)
        expected[lo:hi] = 0.0
        assert array.tobytes() == expected.tobytes()


@pytest.mark.parametrize("offset", [0, 4, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_a_streamed_one_hot_gradient_equals_torch(dtype, offset):
    """A gradient above STREAM_STORE_BYTES (zeroed with non-temporal stores) into an out= array
    of nan at any alignment: torch's bits, ignored rows and signs included."""
    value_and_grad, _ = functions("nll_loss")
    classes = 1000
    rows = rt.STREAM_STORE_BYTES // (classes * np.dtype(dtype).itemsize) + 37
    rng = np.random.default_rng(offset)
    x, target = arrays((rows, classes), dtype, rng)
    out = misaligned(x.shape, dtype, offset)
    value, (grad, _) = value_and_grad(x, target, out=(out, None))
    assert grad is out
    tensor = torch.from_numpy(x).requires_grad_(True)
    expected = torch.nn.functional.nll_loss(tensor, torch.from_numpy(target))
    (expected_grad,) = torch.autograd.grad(expected, tensor)
    assert grad.tobytes() == expected_grad.numpy().tobytes()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_row_prepare_reads_no_values_but_the_targets(name, dtype):
    """The claim behind a row plan: binding a call whose input holds nan, infinities or extremes
    (and whose targets are in range) neither raises nor warns, so a plan made from one call serves
    any input of its signature; the targets' range is the one thing it checks per call."""
    _, loss = functions(name)
    def values(fill, target):  # bind() takes the dict over: a fresh one per call
        values = dict(input=np.full((4, 3), fill, dtype), target=np.array(target, dtype=np.int64), weight=None,
                      size_average=None, ignore_index=-100, reduce=None, reduction="mean")
        if name == "cross_entropy":
            values["label_smoothing"] = 0.1
        return values

    for fill in (np.nan, np.inf, -np.inf, -1e30, 1e30, 0.0):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss.bind(values(fill, [0, 2, 1, -100]))
    with pytest.raises(IndexError, match="Target 3 is out of bounds."):
        loss.bind(values(0.0, [0, 3, 1, -100]))
