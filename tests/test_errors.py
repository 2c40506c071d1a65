"""Bad input: every case is derived from torch. Where torch raises, losscc must raise a ValueError
(its InvalidArgument / InvalidIndex subclasses included) or an exception of torch's type, with a
message, before any compiled kernel runs; where torch's error is a ValueError, with torch's
message (shapes printed as tuples). Where torch accepts, the result must equal torch's."""
from __future__ import annotations

import numpy as np
import pytest

import support
from support import (
    LOSSES,
    ClassTarget,
    Int,
    assert_error_compatible,
    kernel_stubs,
    make_args,
    normalize,
    required,
    run_ours,
    run_torch,
)
from compiler import lang
from test_parity import check_against_torch


def compare_with_torch(spec, args, rng, what, reduction="mean", precision=np.float64):
    """torch raises -> we raise compatibly (before any kernel); torch accepts -> same result, to
    the tolerance of ``precision``."""
    before = support.copies(args)
    theirs = run_torch(spec, args, want_grads=False)
    if theirs.error is None:
        mine = run_ours(spec, args)
        if mine.error is not None and enlarges_input(spec, args) and support.note_mentions(spec, "enlarge"):
            pytest.skip(f"torch accepts an argument that enlarges input's shape; losscc rejects it as its spec notes: "
                        f"{support._note(spec, 'enlarge')}")
        check_against_torch(spec, args, reduction, precision, rng, what + " (torch accepts)")
        return
    with kernel_stubs(spec) as stubbed:
        mine = run_ours(spec, args)
        back = run_ours(spec, args, "_backward", grad_output=np.float64(1.0))
        fused = run_ours(spec, args, "_value_and_grad")
    for label, outcome in (("forward", mine), ("backward", back), ("value_and_grad", fused)):
        assert_error_compatible(theirs.error, outcome.error, f"{what}: {label}")
        if stubbed:
            assert "kernel ran" not in str(outcome.error), f"{what}: {label}: a kernel ran before validation"
    if isinstance(theirs.error, ValueError):
        assert normalize(str(mine.error)) == normalize(str(theirs.error)), (
            f"{what}: torch's ValueError says {str(theirs.error)!r}, losscc says {str(mine.error)!r}"
        )
    support.assert_unchanged(before, args)


def enlarges_input(spec, args):
    first = required(spec)[0].name
    shapes = [np.shape(v) for v in args.values() if isinstance(v, np.ndarray)]
    try:
        return np.broadcast_shapes(*shapes) != np.shape(args[first])
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# reduction strings
# ---------------------------------------------------------------------------------------------

BAD_REDUCTIONS = ["bogus", "MEAN", "", None, 1, "batchmean"]


@pytest.mark.parametrize("reduction", BAD_REDUCTIONS, ids=repr)
@pytest.mark.parametrize("loaded,options", support.cases(with_reductions=False))
def test_bad_reduction(loaded, options, reduction, rng):
    spec = loaded.spec
    args = make_args(spec, options, "matrix", np.float64, rng, reduction)
    args["reduction"] = reduction
    compare_with_torch(spec, args, rng, f"{spec.name}({support.options_id(options)}, reduction={reduction!r})")


@pytest.mark.parametrize("loaded", [l for l in LOSSES if support.has_legacy(l.spec)], ids=support.loss_id)
def test_bad_reduction_ignored_under_legacy(loaded, rng):
    """size_average/reduce override reduction: torch never looks at a bad reduction string then."""
    spec = loaded.spec
    args = make_args(spec, {}, "matrix", np.float64, rng, "bogus")
    args["size_average"] = False
    compare_with_torch(spec, args, rng, f"{spec.name}(size_average=False, reduction='bogus')", "sum")


# ---------------------------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------------------------

# (shape of the first required array, shape of the one being varied); the others keep the first's
ELEMENTWISE_SHAPES = [
    ((3,), (2,)),
    ((3,), (3, 1)),
    ((3, 1), (3,)),
    ((3,), (2, 3)),
    ((2, 3), (3,)),
    ((3,), ()),
    ((), (3,)),
    ((2, 3), (2, 1)),
    ((2, 3), (4, 2, 3)),
    ((2, 3), (3, 2)),
    ((0,), (2,)),
    ((2, 3), (2, 3, 1)),
]
ROW_SHAPES = [
    ((4, 5), (3,)),
    ((4, 5), (4, 1)),
    ((4, 5), (4, 5, 1)),
    ((4, 5), ()),
    ((5,), (2,)),
    ((4, 5), (5,)),
    ((4, 5), (4, 6)),
    ((3, 5, 2), (3, 2, 2)),
    ((3, 5, 2), (3,)),
    ((0, 5), (4,)),
]


def array_for(spec, param, shape, dtype, rng):
    if ClassTarget is not None and isinstance(param, ClassTarget):
        return rng.integers(0, support.CLASSES, size=shape).astype(np.int64)
    domain = getattr(param, "domain", "real")
    return support.sample(domain, shape, dtype, rng)


def shape_cases():
    result = []
    for loaded in LOSSES:
        spec = loaded.spec
        arrays = [p for p in spec.params if isinstance(p, (lang.Tensor, lang.OptionalTensor))
                  or (ClassTarget is not None and isinstance(p, ClassTarget))]
        first = arrays[0]
        table = ROW_SHAPES if support.is_row(spec) else ELEMENTWISE_SHAPES
        for other in arrays[1:]:
            for base, varied in table:
                result.append(pytest.param(loaded, first.name, other.name, base, varied,
                                           id=f"{spec.name}-{first.name}{base}-{other.name}{varied}"))
        # the first array varied against the others
        for base, varied in table[:4]:
            result.append(pytest.param(loaded, first.name, first.name, varied, base,
                                       id=f"{spec.name}-others{varied}-{first.name}{base}"))
    return result


@pytest.mark.parametrize("loaded,first,other,base,varied", shape_cases())
def test_shapes(loaded, first, other, base, varied, rng):
    """A shape pair torch rejects is rejected; one torch accepts (broadcasting) computes as torch."""
    spec = loaded.spec
    args = {}
    for p in spec.params:
        if isinstance(p, (lang.Tensor, lang.OptionalTensor)) or (ClassTarget is not None and isinstance(p, ClassTarget)):
            if isinstance(p, lang.OptionalTensor) and p.name != other:
                continue
            if first == other:  # the first array varied: it gets ``base``, all others ``varied``
                shape = base if p.name == first else varied
            else:
                shape = varied if p.name == other else base
            if getattr(p, "layout", "elements") == "classes" and p.name != other:
                shape = (support.CLASSES,)
            if ClassTarget is not None and isinstance(p, ClassTarget) and p.name != other:
                shape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
            args[p.name] = array_for(spec, p, shape, np.float64, rng)
    args["reduction"] = "none"
    what = f"{spec.name}({', '.join(f'{k}{np.shape(v)}' for k, v in args.items() if isinstance(v, np.ndarray))})"
    compare_with_torch(spec, args, rng, what, "none")


# ---------------------------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------------------------

NON_NUMERIC = {
    "strings": lambda shape: np.full(shape, "a"),
    "complex": lambda shape: np.ones(shape, dtype=np.complex128),
    "object": lambda shape: np.full(shape, None, dtype=object),
    "ragged": lambda shape: [[1.0, 2.0], [3.0]],
    "none": lambda shape: None,
}


@pytest.mark.parametrize("kind", list(NON_NUMERIC))
@pytest.mark.parametrize("loaded", LOSSES, ids=support.loss_id)
def test_non_numeric_arrays(loaded, kind, rng):
    """Strings, complex numbers, objects, ragged lists, None: a ValueError naming the argument."""
    spec = loaded.spec
    for param in required(spec):
        args = make_args(spec, {}, "matrix", np.float64, rng, "mean")
        args[param.name] = NON_NUMERIC[kind](np.shape(args[param.name]))
        if kind == "none":  # torch can take this: it decides the exception type
            compare_with_torch(spec, args, rng, f"{spec.name}({param.name}=None)")
            continue
        with kernel_stubs(spec):
            mine = run_ours(spec, args)
        assert isinstance(mine.error, ValueError), (
            f"{spec.name}: {kind} {param.name}: expected ValueError, got {mine.error!r} / {mine.value!r}"
        )
        assert "kernel ran" not in str(mine.error)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("loaded", LOSSES, ids=support.loss_id)
def test_other_dtypes_follow_torch(loaded, dtype, rng):
    """Integer, boolean and half arrays as each required argument: torch decides."""
    spec = loaded.spec
    for param in required(spec):
        args = make_args(spec, {}, "matrix", np.float64, rng, "sum")
        value = args[param.name]
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            continue
        args[param.name] = np.round(value * 2).astype(dtype) if dtype is not np.bool_ else value > 0
        what = f"{spec.name}({param.name} as {np.dtype(dtype).name})"
        theirs = run_torch(spec, args, want_grads=False)
        if theirs.error is None and dtype is np.float16:
            mine = run_ours(spec, args)
            assert mine.error is None or isinstance(mine.error, ValueError), what
            if mine.error is not None:
                continue  # float16 is documented as unsupported: a ValueError is a fine answer
        # float32 tolerance: torch computes some intermediates of an integer tensor in its default
        # dtype (poisson's exp(input) is float32), losscc in the result's precision
        compare_with_torch(spec, args, rng, what, "sum", precision=np.float32)


# ---------------------------------------------------------------------------------------------
# scalar options and values outside a domain
# ---------------------------------------------------------------------------------------------

BAD_REALS = ["abc", None, [1.0, 2.0], 1 + 1j, np.array([1.0, 2.0]), float("nan"), float("inf"), -1.0, 0.0, 1e-30]
BAD_FLAGS = ["yes", None, 3, 1.5]
BAD_INTS = ["a", 1.5, None, -1, 10**30]


def option_cases():
    result = []
    for loaded in LOSSES:
        for p in loaded.spec.params:
            if isinstance(p, lang.Real):
                values = BAD_REALS
            elif isinstance(p, lang.Flag):
                values = BAD_FLAGS
            elif Int is not None and isinstance(p, Int):
                values = BAD_INTS
            else:
                continue
            for value in values:
                result.append(pytest.param(loaded, p.name, value, id=f"{loaded.name}-{p.name}={value!r}"))
    return result


@pytest.mark.parametrize("loaded,name,value", option_cases())
def test_scalar_options(loaded, name, value, rng):
    spec = loaded.spec
    args = make_args(spec, {}, "matrix", np.float64, rng, "sum")
    args[name] = value
    compare_with_torch(spec, args, rng, f"{spec.name}({name}={value!r})", "sum")


OUTSIDE = {"below": -0.5, "above": 1.5, "nan": float("nan"), "huge": 1e6}


def domain_cases():
    result = []
    for loaded in LOSSES:
        for p in loaded.spec.params:
            if isinstance(p, (lang.Tensor, lang.OptionalTensor)) and getattr(p, "domain", "real") in ("unit", "prob", "positive", "sign"):
                for label in OUTSIDE:
                    result.append(pytest.param(loaded, p.name, label, id=f"{loaded.name}-{p.name}-{label}"))
    return result


@pytest.mark.parametrize("loaded,name,label", domain_cases())
def test_values_outside_domain(loaded, name, label, rng):
    """One element outside the argument's domain: torch decides (bce checks [0, 1], gaussian
    rejects a negative var, most losses accept anything)."""
    spec = loaded.spec
    options = {name: support.PRESENT} if any(isinstance(p, lang.OptionalTensor) and p.name == name for p in spec.params) else {}
    args = make_args(spec, options, "matrix", np.float64, rng, "none")
    bad = args[name].copy()
    bad.reshape(-1)[0] = OUTSIDE[label]
    args[name] = bad
    compare_with_torch(spec, args, rng, f"{spec.name}({name} with a {label} element)", "none")
