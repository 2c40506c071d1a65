"""Plans (runtime Plan): a repeated plain call of a loss whose prepare step is signature-only skips
argument handling. It must compute exactly what the full path computes, never skip a check that
reads values, and the specs that claim a signature-only prepare must not read values."""
from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

import support
from generated import _runtime as rt
from support import make_args, split_args

ELEMENTWISE = [loaded for loaded in support.LOSSES if support.kind(loaded.spec) == "elementwise"]
PLANNED = [loaded for loaded in ELEMENTWISE if loaded.spec.signature_only_prepare or loaded.spec.prepare is None]
# specs whose prepare reads array values: the guard below must catch them
VALUE_READERS = ("binary_cross_entropy", "gaussian_nll_loss")
FILLS = (np.nan, np.inf, -np.inf, -1e30, 1e30, -2.0, 2.0, 0.0)


def loss_of(name: str) -> rt.ElementwiseLoss:
    return getattr(support.generated_module(), name).__globals__["_LOSS"]


def same(a, b) -> None:
    """Bit for bit: values, dtypes, shapes, and None where None."""
    if a is None or b is None:
        assert a is None and b is None
        return
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()  # nan payloads and signed zeros included


def apart(shape, dtype, fill):
    """An out= array of ``fill`` that starts 512 bytes into an allocation of its own: never just
    after an input (rt.starts_within_reach), where a plan leaves the call to the full path (which
    writes a fresh array and copies it over). A small array from np.empty can land there: the
    plan counts below then depended on where malloc put it."""
    itemsize = np.dtype(dtype).itemsize
    block = np.empty(int(np.prod(shape)) * itemsize + 512, np.uint8)
    array = block[512:].view(dtype).reshape(shape)
    array[...] = fill
    return array


@pytest.fixture
def plan_calls(monkeypatch):
    """How many calls each Plan entry point served."""
    counts = {"forward": 0, "value_and_grad": 0, "backward": 0}
    for entry in counts:
        original = getattr(rt.Plan, entry)

        def counted(self, *arguments, _original=original, _entry=entry):
            counts[_entry] += 1
            return _original(self, *arguments)

        monkeypatch.setattr(rt.Plan, entry, counted)
    return counts


@pytest.mark.parametrize("family", ["scalar", "kdim", "empty"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("loaded, options, reduction", support.cases(lambda s: s in PLANNED))
def test_planned_calls_equal_the_full_path(loaded, options, reduction, dtype, family, plan_calls, monkeypatch):
    spec = loaded.spec
    rng = np.random.default_rng(support.seed_of(spec.name, options, reduction, family))
    args = make_args(spec, options, family, dtype, rng, reduction)
    positional, keywords = split_args(spec, args)
    module = support.generated_module()
    forward, value_and_grad = getattr(module, spec.name), getattr(module, spec.name + "_value_and_grad")
    backward = getattr(module, spec.name + "_backward")
    loss = loss_of(spec.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkeypatch.setattr(loss, "signature_only_prepare", False)
        try:
            value = forward(*positional, **keywords)
            grad_output = rng.standard_normal(np.shape(value)).astype(dtype) if reduction == "none" else np.asarray(0.7, dtype)
            full = (value, value_and_grad(*positional, **keywords), backward(grad_output, *positional, **keywords))
        except Exception as error:  # noqa: BLE001 - the planned path must raise the same
            full = error
        monkeypatch.setattr(loss, "signature_only_prepare", True)
        loss.plans.clear()
        for _ in range(3):  # the first call makes the plan, the others use it
            if isinstance(full, Exception):
                with pytest.raises(type(full)):
                    forward(*positional, **keywords)
                continue
            same(forward(*positional, **keywords), full[0])
            same(value_and_grad(*positional, **keywords), full[1])
            same(backward(grad_output, *positional, **keywords), full[2])
    if isinstance(full, Exception):
        assert not loss.plans, "a call that raised left a plan"
    elif options == {} and family == "scalar":  # plain: every array of one shape, no option
        # the first forward makes the plan, which serves every later call of each entry point
        assert plan_calls == {"forward": 2, "value_and_grad": 3, "backward": 3}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("loaded", PLANNED, ids=support.loss_id)
def test_plans_follow_new_data(loaded, dtype, plan_calls, monkeypatch):
    """A plan keeps decisions, never values: a second call of the same signature with other
    arrays gives what the full path gives for them."""
    spec = loaded.spec
    module = support.generated_module()
    value_and_grad = getattr(module, spec.name + "_value_and_grad")
    loss = loss_of(spec.name)
    loss.plans.clear()
    rng = np.random.default_rng(7)
    first = split_args(spec, make_args(spec, {}, "vector", dtype, rng))
    second = split_args(spec, make_args(spec, {}, "vector", dtype, rng))
    value_and_grad(*first[0], **first[1])
    planned = value_and_grad(*second[0], **second[1])
    assert plan_calls["value_and_grad"] == 1
    monkeypatch.setattr(loss, "signature_only_prepare", False)
    same(planned, value_and_grad(*second[0], **second[1]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("loaded", PLANNED, ids=support.loss_id)
def test_planned_out_equals_the_full_path(loaded, reduction, dtype, plan_calls, monkeypatch):
    """value_and_grad(..., out=) with a plan writes what the full path writes, into the
    caller's arrays, and returns those arrays."""
    spec = loaded.spec
    rng = np.random.default_rng(support.seed_of(spec.name, {}, reduction, "kdim"))
    positional, keywords = split_args(spec, make_args(spec, {}, "kdim", dtype, rng, reduction))
    value_and_grad = getattr(support.generated_module(), spec.name + "_value_and_grad")
    loss = loss_of(spec.name)
    monkeypatch.setattr(loss, "signature_only_prepare", False)
    full = value_and_grad(*positional, **keywords)
    monkeypatch.setattr(loss, "signature_only_prepare", True)
    loss.plans.clear()
    for _ in range(3):  # the first call makes the plan, the others write through it
        out = tuple(None if g is None else apart(g.shape, g.dtype, np.nan) for g in full[1])
        value, grads = value_and_grad(*positional, **keywords, out=out)
        same((value, grads), full)
        assert all(g is o for g, o in zip(grads, out)), "the out arrays themselves are returned"
    assert plan_calls["value_and_grad"] == 2


def test_a_planned_out_is_checked(plan_calls):
    """Every out= check of the full path holds when a plan exists: a bad out= goes to the full
    path, which rejects it; a good one after it still uses the plan."""
    module = support.generated_module()
    x, y = np.linspace(-2, 2, 8), np.linspace(1, 3, 8)
    loss_of("mse_loss").plans.clear()
    good = (apart(8, np.float64, 0.0), apart(8, np.float64, 0.0))
    module.mse_loss_value_and_grad(x, y, out=good)
    module.mse_loss_value_and_grad(x, y, out=good)
    assert plan_calls["value_and_grad"] == 1
    read_only = np.empty(8)
    read_only.flags.writeable = False
    bad = {
        "one entry": (good[0],),
        "wrong shape": (np.empty(9), good[1]),
        "wrong dtype": (np.empty(8, np.float32), good[1]),
        "not contiguous": (np.empty(16)[::2], good[1]),
        "read-only": (read_only, good[1]),
        "an input": (x, good[1]),
        "a view of an input": (good[0], y[:]),
        "one array for both": (good[0], good[0]),
    }
    for reason, out in bad.items():
        with pytest.raises(ValueError):
            module.mse_loss_value_and_grad(x, y, out=out)
            pytest.fail(f"out with {reason} was accepted")
    module.mse_loss_value_and_grad(x, y, out=good)
    assert plan_calls["value_and_grad"] == 2


DIRECT_SIZE = 3 * rt.CHUNK_ELEMENTS  # flat and several chunks: Plan.direct


def direct_args(spec, options, dtype, seed):
    """A call of DIRECT_SIZE elements per array: the vector family's values, repeated."""
    args = make_args(spec, options, "vector", dtype, np.random.default_rng(seed))
    return {k: np.resize(v, DIRECT_SIZE) if isinstance(v, np.ndarray) else v for k, v in args.items()}


@pytest.fixture
def direct_calls(monkeypatch):
    """How many calls the generated value_and_grad sent straight to Plan.value_and_grad_of."""
    calls = []
    original = rt.Plan.value_and_grad_of

    def counted(self, *arrays):
        calls.append(arrays)
        return original(self, *arrays)

    monkeypatch.setattr(rt.Plan, "value_and_grad_of", counted)
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("loaded, options, reduction", support.cases(lambda s: s in PLANNED))
def test_direct_calls_equal_the_full_path(loaded, options, reduction, dtype, direct_calls, monkeypatch):
    """The generated value_and_grad's own check of a plain call (flat arrays of several chunks,
    a reduced loss, no optional array) reaches the plan directly and computes what the full
    path computes, bit for bit, for every option."""
    spec = loaded.spec
    args = direct_args(spec, options, dtype, support.seed_of(spec.name, options, reduction))
    args["reduction"] = reduction
    positional, keywords = split_args(spec, args)
    value_and_grad = getattr(support.generated_module(), spec.name + "_value_and_grad")
    loss = loss_of(spec.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkeypatch.setattr(loss, "signature_only_prepare", False)
        loss.plans.clear()  # no plan: none is made while the flag is off
        full = value_and_grad(*positional, **keywords)
        monkeypatch.setattr(loss, "signature_only_prepare", True)
        for _ in range(3):
            same(value_and_grad(*positional, **keywords), full)
    optional_given = any(isinstance(args.get(name), np.ndarray) for name in loss.optional)
    direct = reduction != "none" and not optional_given and bool(loss.plans)
    assert len(direct_calls) == (2 if direct else 0)


@pytest.mark.parametrize("call, reaches", [
    (lambda m, x, y: m.huber_loss_value_and_grad(x, y, delta=np.float64(1.0)), False),  # a numpy real
    (lambda m, x, y: m.huber_loss_value_and_grad(x, y, delta=True), False),  # a bool is no real
    (lambda m, x, y: m.huber_loss_value_and_grad(x, y, delta=1), True),  # an int: plain_key's 1 == 1.0
    (lambda m, x, y: m.margin_ranking_loss_value_and_grad(x, y, np.sign(x), margin=-0.0), False),
    (lambda m, x, y: m.mse_loss_value_and_grad(x, y.astype(np.float32)), False),  # mixed dtypes
    (lambda m, x, y: m.mse_loss_value_and_grad(x[::2], y[::2]), False),  # strided
    (lambda m, x, y: m.mse_loss_value_and_grad(x, y, weight=np.ones_like(x)), False),  # an optional array
    (lambda m, x, y: m.mse_loss_value_and_grad(x, y, reduction="none"), False),  # unreduced
    (lambda m, x, y: m.mse_loss_value_and_grad(x.reshape(-1, 8), y.reshape(-1, 8)), False),  # not flat
    (lambda m, x, y: m.mse_loss_value_and_grad(x, y, reduce=True), False),  # a legacy argument
    (lambda m, x, y: m.mse_loss_value_and_grad(list(x[:4]), y[:4]), False),  # a list
    (lambda m, x, y: m.poisson_nll_loss_value_and_grad(x, np.abs(y), log_input=1), False),  # an int flag
], ids=["numpy-real", "bool-real", "int-real", "negative-zero", "mixed-dtypes", "strided", "weight", "none",
        "2d", "legacy", "list", "int-flag"])
def test_direct_calls_take_only_what_plain_key_takes(call, reaches, direct_calls, monkeypatch):
    """A call reaches a plan directly exactly where plain_key would give the plan's key, and
    gives (or raises) what the full path gives."""
    module = support.generated_module()
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal(DIRECT_SIZE), rng.standard_normal(DIRECT_SIZE)
    names = ("huber_loss", "margin_ranking_loss", "mse_loss", "poisson_nll_loss")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            monkeypatch.setattr(loss_of(name), "signature_only_prepare", False)
            loss_of(name).plans.clear()  # no plan: none is made while the flag is off
        try:
            full = call(module, x, y)
        except Exception as error:  # noqa: BLE001 - the direct path must raise the same
            full = error
        for name in names:
            monkeypatch.setattr(loss_of(name), "signature_only_prepare", True)
        # the plain float calls of these losses: the plans these calls must not reach
        module.huber_loss_value_and_grad(x, y, delta=1.0)
        module.margin_ranking_loss_value_and_grad(x, y, np.sign(x), margin=0.0)
        module.mse_loss_value_and_grad(x, y)
        module.poisson_nll_loss_value_and_grad(x, np.abs(y), log_input=True)
        for _ in range(3):
            if isinstance(full, Exception):
                with pytest.raises(type(full)):
                    call(module, x, y)
            else:
                same(call(module, x, y), full)
    assert len(direct_calls) == (3 if reaches else 0)


def prepare_reads_values(loaded, dtype) -> str | None:
    """Why the spec's prepare step is not signature-only, or None: binding a call (which runs
    prepare) whose arrays all share one plain signature but are filled with nan, infinities,
    extremes or out-of-domain values, a signature-only prepare neither raises nor warns."""
    spec = loaded.spec
    forward = getattr(support.generated_module(), spec.name)
    positional, keywords = split_args(spec, make_args(spec, {}, "vector", dtype, np.random.default_rng(3)))
    for fill in FILLS:
        filled = inspect.signature(forward).bind(
            *[np.full_like(v, fill) if isinstance(v, np.ndarray) else v for v in positional],
            **{k: (np.full_like(v, fill) if isinstance(v, np.ndarray) else v) for k, v in keywords.items()})
        filled.apply_defaults()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                loss_of(spec.name).bind(dict(filled.arguments))
        except Exception as error:  # noqa: BLE001 - any reaction to the values is the finding
            return f"arrays filled with {fill}: {type(error).__name__}: {error}"
    return None


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("loaded", PLANNED, ids=support.loss_id)
def test_signature_only_prepare_reads_no_values(loaded, dtype):
    assert prepare_reads_values(loaded, dtype) is None


@pytest.mark.parametrize("name", VALUE_READERS)
def test_the_guard_catches_a_prepare_that_reads_values(name):
    """The check above can fail: the specs whose prepare scans their arrays are caught by it
    (and so do not claim signature_only_prepare)."""
    (loaded,) = [loaded for loaded in ELEMENTWISE if loaded.name == name]
    assert not loaded.spec.signature_only_prepare
    assert prepare_reads_values(loaded, np.float64) is not None


def test_a_plan_never_skips_a_check_of_a_real(plan_calls):
    """huber's delta is checked in prepare: after a plan for delta=1 exists, delta=-1 still raises."""
    module = support.generated_module()
    x, y = np.linspace(-2, 2, 8), np.zeros(8)
    loss_of("huber_loss").plans.clear()
    module.huber_loss(x, y, delta=1.0)
    module.huber_loss(x, y, delta=1.0)
    assert plan_calls["forward"] == 1
    with pytest.raises(ValueError, match="non-positive values for delta"):
        module.huber_loss(x, y, delta=-1.0)
    with pytest.raises(ValueError, match="non-positive values for delta"):
        module.huber_loss(x, y, delta=-1.0)


@pytest.mark.parametrize("call", [
    lambda m, x, y: m.mse_loss(list(x), y),  # a list: converted
    lambda m, x, y: m.mse_loss(x[::2], y[::2]),  # strided
    lambda m, x, y: m.mse_loss(x, y.astype(np.float32)),  # mixed dtypes: promoted
    lambda m, x, y: m.mse_loss(x, y, reduce=False),  # legacy argument
    lambda m, x, y: m.mse_loss(x, y[:1]),  # broadcast (torch warns)
    lambda m, x, y: m.margin_ranking_loss(x, y, np.ones(8), margin=-0.0),  # -0.0 is not 0.0 to a kernel
], ids=["list", "strided", "mixed-dtypes", "legacy", "broadcast", "negative-zero"])
def test_calls_that_are_not_plain_make_no_plan(call, plan_calls):
    module = support.generated_module()
    x, y = np.linspace(-2, 2, 8), np.linspace(1, 3, 8)
    for name in ("mse_loss", "margin_ranking_loss"):
        loss_of(name).plans.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, second = call(module, x, y), call(module, x, y)
    same(first, second)
    assert plan_calls["forward"] == 0
    assert not loss_of("mse_loss").plans and not loss_of("margin_ranking_loss").plans


def test_the_plan_table_stays_bounded():
    module = support.generated_module()
    loss = loss_of("mse_loss")
    loss.plans.clear()
    for n in range(1, 2 * rt.ElementwiseLoss.PLAN_LIMIT + 2):
        module.mse_loss(np.ones(n), np.zeros(n))
        assert 1 <= len(loss.plans) <= rt.ElementwiseLoss.PLAN_LIMIT


def test_a_planned_backward_checks_grad_output(plan_calls):
    """grad_output is the caller's on every call: a plan checks its shape as the full path does."""
    module = support.generated_module()
    x, y = np.linspace(-2, 2, 8), np.zeros(8)
    loss_of("mse_loss").plans.clear()
    module.mse_loss_backward(np.ones(8), x, y, reduction="none")
    module.mse_loss_backward(np.ones(8), x, y, reduction="none")
    assert plan_calls["backward"] == 1
    with pytest.raises(ValueError, match="grad_output has shape"):
        module.mse_loss_backward(np.ones(7), x, y, reduction="none")
    module.mse_loss_backward(np.asarray(1.0), x, y)  # a plan for 'mean'
    with pytest.raises(ValueError, match="must be a scalar"):
        module.mse_loss_backward(np.ones(2), x, y)
    assert plan_calls["backward"] == 3  # both bad grad_outputs met a plan
