"""Parity with torch.nn.functional: signatures, forward values and dtypes, gradients of every
differentiable argument (torch.autograd.grad with a random grad_output), value_and_grad, and
the warnings torch emits. Parametrized over every spec x option combination x reduction x
dtype x shape family."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import support
from support import (
    DTYPES,
    FAMILIES,
    LOSSES,
    assert_close,
    assert_error_compatible,
    assert_same_warnings,
    assert_unchanged,
    copies,
    differentiable_names,
    make_args,
    required,
    run_ours,
    run_torch,
)


# ---------------------------------------------------------------------------------------------
# signatures and exports
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loaded", LOSSES, ids=support.loss_id)
def test_signature_matches_torch(loaded):
    spec = loaded.spec
    torch_fn = support.torch_function(spec)
    try:
        theirs = support.signature_of(torch_fn)
    except (TypeError, ValueError):
        pytest.skip(f"torch.nn.functional.{spec.torch_name or spec.name} has no inspectable signature")
    extra = support.extensions(spec)  # keyword-only losscc options (ctc's exact_gradient)
    mine = [p for p in support.signature_of(support.ours(spec)) if p[0] not in extra]
    assert [n for n, _ in mine] == [n for n, _ in theirs]
    for (name, default), (_, torch_default) in zip(mine, theirs):
        assert default == torch_default, f"default of {name}: {default!r}, torch {torch_default!r}"
        assert type(default) is type(torch_default) or isinstance(default, (int, float)) and isinstance(
            torch_default, (int, float)
        ), f"default of {name}: {default!r}, torch {torch_default!r}"
    backward = [p for p in support.signature_of(support.ours(spec, "_backward")) if p[0] not in extra]
    assert backward == [("grad_output", inspect.Parameter.empty)] + mine
    fused = [p for p in support.signature_of(support.ours(spec, "_value_and_grad")) if p[0] not in extra]
    assert fused[:len(mine)] == mine and fused[len(mine):] in ([], [("out", None)])  # keyword-only out=
    required_torch = [n for n, d in theirs if d is inspect.Parameter.empty]
    assert [p.name for p in required(spec)] == required_torch


def test_package_exports_every_spec(registry):
    generated = support.generated_module()
    assert tuple(generated.LOSSES) == tuple(sorted(s.name for s in registry))
    for loaded in registry:
        for suffix in ("", "_backward", "_value_and_grad"):
            assert loaded.name + suffix in generated.__all__
            assert callable(getattr(generated, loaded.name + suffix))
    assert issubclass(generated.InvalidArgument, ValueError) and issubclass(generated.InvalidArgument, RuntimeError)
    assert issubclass(generated.InvalidIndex, ValueError) and issubclass(generated.InvalidIndex, IndexError)


# ---------------------------------------------------------------------------------------------
# forward, backward, value_and_grad against torch
# ---------------------------------------------------------------------------------------------

def check_against_torch(spec, args, reduction, dtype, rng, what, notes=None):
    """The whole contract for one call; returns without failing when torch raises and we do too
    (the caller then skips)."""
    before = copies(args)
    go_holder = {}

    def grad_output(value):
        go_holder["go"] = np.asarray(rng.standard_normal(value.shape), dtype=value.dtype)
        return go_holder["go"]

    theirs = run_torch(spec, args, grad_output=grad_output)
    mine = run_ours(spec, args)
    if theirs.error is not None:
        assert_error_compatible(theirs.error, mine.error, what)
        assert_unchanged(before, args)
        return f"torch raises {type(theirs.error).__name__}: {theirs.error}"
    if mine.error is not None:
        raise AssertionError(f"{what}: torch accepts, losscc raises {type(mine.error).__name__}: {mine.error}")

    # forward
    value = mine.value
    assert isinstance(value, np.ndarray), f"{what}: forward returned {type(value).__name__}"
    assert value.dtype == theirs.value.dtype, f"{what}: dtype {value.dtype}, torch {theirs.value.dtype}"
    assert_close(value, theirs.value, dtype, f"{what}: forward", support.overflow_mask(spec, theirs.value, value))
    assert_same_warnings(theirs.warnings, mine.warnings, f"{what}: forward warnings")

    # backward with a random grad_output
    go = go_holder["go"]
    back = run_ours(spec, args, "_backward", grad_output=go)
    if back.error is not None:
        raise AssertionError(f"{what}: backward raises {type(back.error).__name__}: {back.error}")
    if theirs.grad_error is not None:
        # torch's own backward fails here: check our gradients' form, not their values
        check_grads(spec, args, back.value, None, f"{what}: backward")
        if notes is not None:
            notes.append(f"torch's backward raises {type(theirs.grad_error).__name__}: {theirs.grad_error}")
    else:
        check_grads(spec, args, back.value, theirs.grads, f"{what}: backward", dtype)

    # value_and_grad == forward and backward with ones
    fused = run_ours(spec, args, "_value_and_grad")
    if fused.error is not None:
        raise AssertionError(f"{what}: value_and_grad raises {type(fused.error).__name__}: {fused.error}")
    assert isinstance(fused.value, tuple) and len(fused.value) == 2
    loss, grads = fused.value
    assert isinstance(loss, np.ndarray) and loss.dtype == theirs.value.dtype and loss.shape == theirs.value.shape
    assert_close(loss, theirs.value, dtype, f"{what}: value_and_grad loss", support.overflow_mask(spec, theirs.value, loss))
    if theirs.grad_error is None:
        ones = run_torch(spec, args, grad_output=lambda v: np.ones(v.shape, v.dtype))
        check_grads(spec, args, grads, ones.grads, f"{what}: value_and_grad gradients", dtype)
    else:
        check_grads(spec, args, grads, None, f"{what}: value_and_grad gradients")
    assert_unchanged(before, args)
    return None


def check_grads(spec, args, grads, torch_grads, what, dtype=None):
    """``torch_grads`` None: torch could not differentiate; check only which entries are arrays,
    and their shapes and dtypes (those of the arguments)."""
    assert isinstance(grads, tuple), f"{what}: returned {type(grads).__name__}, not a tuple"
    names = [p.name for p in required(spec)]
    assert len(grads) == len(names), f"{what}: {len(grads)} gradients for the required arguments {names}"
    if torch_grads is None:
        wanted = differentiable_names(spec, args)
        for name, grad in zip(names, grads):
            if name not in wanted:
                assert grad is None, f"{what}: torch does not differentiate {name}, losscc returns an array"
            else:
                assert isinstance(grad, np.ndarray) and grad.shape == args[name].shape, what
                assert grad.dtype == args[name].dtype, f"{what}: gradient of {name} has dtype {grad.dtype}"
        return
    for name, grad in zip(names, grads):
        if name not in torch_grads:
            assert grad is None, f"{what}: torch does not differentiate {name}, losscc returns an array"
            continue
        assert isinstance(grad, np.ndarray), f"{what}: gradient of {name} is {type(grad).__name__}"
        expected = torch_grads[name]
        assert grad.shape == np.shape(args[name]) == expected.shape, (
            f"{what}: gradient of {name} has shape {grad.shape}, the argument {np.shape(args[name])}"
        )
        assert grad.dtype == expected.dtype, f"{what}: gradient of {name} has dtype {grad.dtype}, torch {expected.dtype}"
        assert_close(grad, expected, dtype or grad.dtype, f"{what}: gradient of {name}",
                     support.overflow_mask(spec, expected, grad))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("loaded,options,reduction", support.cases())
def test_parity(loaded, options, reduction, dtype, family, rng):
    spec = loaded.spec
    support.skip_documented_case(spec, family, reduction)
    args = make_args(spec, options, family, dtype, rng, reduction)
    what = f"{spec.name}({support.options_id(options)}, reduction={reduction!r}) {family} {np.dtype(dtype).name}"
    notes = []
    skipped = check_against_torch(spec, args, reduction, dtype, rng, what, notes)
    if skipped:
        pytest.skip(skipped + " (and losscc raises a compatible error)")
    if notes:
        pytest.skip("forward compared; " + "; ".join(notes))


@pytest.mark.parametrize("loaded,options", support.cases(with_reductions=False))
@pytest.mark.parametrize("first,rest", [(np.float32, np.float64), (np.float64, np.float32)],
                         ids=["f32-f64", "f64-f32"])
def test_mixed_dtypes(loaded, options, first, rest, rng):
    """Type promotion between arguments of different float dtypes follows torch (the result dtype,
    or torch's refusal)."""
    spec = loaded.spec
    args = make_args(spec, options, "vector", np.float64, rng, "none")
    tensors = [k for k, v in args.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
    for index, name in enumerate(tensors):
        args[name] = args[name].astype(first if index == 0 else rest)
    what = f"{spec.name}({support.options_id(options)}) input {np.dtype(first).name}, others {np.dtype(rest).name}"
    notes = []
    skipped = check_against_torch(spec, args, "none", np.float32, rng, what, notes)
    if skipped:
        pytest.skip(skipped + " (and losscc raises a compatible error)")
    if notes:
        pytest.skip("forward compared; " + "; ".join(notes))


@pytest.mark.parametrize("loaded", LOSSES, ids=support.loss_id)
def test_positional_arguments(loaded, rng):
    """Every argument passed positionally in torch's order gives the same result as keywords."""
    spec = loaded.spec
    args = make_args(spec, {}, "vector", np.float64, rng, "sum")
    names = [n for n, p in inspect.signature(support.ours(spec)).parameters.items() if p.kind != p.KEYWORD_ONLY]
    defaults = {n: p.default for n, p in inspect.signature(support.ours(spec)).parameters.items()}
    positional = [args.get(n, defaults[n]) for n in names]
    keyword_only = {n: v for n, v in args.items() if n not in names}  # after '*' (triplet_margin_with_distance_loss)
    by_keyword = run_ours(spec, args)
    assert by_keyword.error is None, by_keyword.error
    value = support.ours(spec)(*positional, **keyword_only)
    np.testing.assert_array_equal(value, by_keyword.value)
    go = np.ones(value.shape) if support.reductions(spec) == ("none",) else np.float64(1.0)  # a distance: per row
    grads = support.ours(spec, "_backward")(go, *positional, **keyword_only)
    reference = run_ours(spec, args, "_backward", grad_output=go).value
    for a, b in zip(grads, reference):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loaded", LOSSES, ids=support.loss_id)
def test_backward_rejects_wrong_grad_output(loaded, rng):
    spec = loaded.spec
    args = make_args(spec, {}, "matrix", np.float64, rng, "none")
    value = run_ours(spec, args).value
    bad = np.ones(value.shape + (2,))
    result = run_ours(spec, args, "_backward", grad_output=bad)
    assert isinstance(result.error, ValueError), f"grad_output of shape {bad.shape} accepted: {result.error!r}"
    args = make_args(spec, {}, "matrix", np.float64, rng, "sum")
    result = run_ours(spec, args, "_backward", grad_output=np.ones(3))
    assert isinstance(result.error, ValueError), "grad_output of shape (3,) accepted for a reduced loss"
