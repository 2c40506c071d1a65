"""triplet_margin_with_distance_loss with distances other than its default: a distance a user
writes as a spec of their own and compiles into their own package, compiled distances with bound
options (functools.partial), and the TypeError for a plain Python function, whose gradient the
compiler cannot derive. With its default distance it runs triplet_margin_loss (Distance.fused):
the same bits, and the chain's own errors."""
from __future__ import annotations

import functools
import re
import textwrap

import numpy as np
import pytest
import torch

import generated
import support

SQUARED_EUCLIDEAN = textwrap.dedent(
    '''
    from compiler.lang import FEATURE, Loss, Real, Tensor, feature_sum


    def element(x1, x2, factor):
        d = x1[FEATURE] - x2[FEATURE]
        return factor * feature_sum(d * d)


    SPEC = Loss(
        name="scaled_squared_euclidean",
        kind="pair",
        summary="factor times the squared Euclidean distance of x1 and x2 over the last axis.",
        params=(
            Tensor("x1", differentiable=True, layout="rows"),
            Tensor("x2", differentiable=True, layout="rows"),
            Real("factor", 1.0),
        ),
        element=element,
    )
    '''
)


@pytest.fixture(scope="module")
def userpkg(tmp_path_factory):
    yield from support.compiled_user_package(tmp_path_factory.mktemp("distances"), "userdistances",
                                             {"scaled_squared_euclidean": SQUARED_EUCLIDEAN})


def torch_squared_euclidean(scale: float = 1.0):
    return lambda a, b: scale * ((a - b) ** 2).sum(-1)


def triplet(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape).astype(dtype) for _ in range(3))


def check(distance, torch_distance, arrays, dtype, reduction, swap, margin=1.0):
    """losscc's loss, backward (random grad_output) and value_and_grad against torch's."""
    keywords = dict(distance_function=distance, margin=margin, swap=swap, reduction=reduction)
    value = generated.triplet_margin_with_distance_loss(*arrays, **keywords)
    grad_output = np.asarray(np.random.default_rng(1).standard_normal(value.shape), dtype=value.dtype)
    grads = generated.triplet_margin_with_distance_loss_backward(grad_output, *arrays, **keywords)
    fused_value, fused_grads = generated.triplet_margin_with_distance_loss_value_and_grad(*arrays, **keywords)

    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    expected = torch.nn.functional.triplet_margin_with_distance_loss(
        *tensors, distance_function=torch_distance, margin=margin, swap=swap, reduction=reduction)
    expected_grads = torch.autograd.grad(expected, tensors, torch.tensor(grad_output))
    ones = torch.autograd.grad(
        torch.nn.functional.triplet_margin_with_distance_loss(
            *tensors, distance_function=torch_distance, margin=margin, swap=swap, reduction=reduction),
        tensors, torch.ones_like(expected))

    assert value.dtype == np.dtype(dtype) and value.shape == tuple(expected.shape)
    support.assert_close(value, expected.detach().numpy(), dtype, "forward")
    support.assert_close(fused_value, expected.detach().numpy(), dtype, "value_and_grad value")
    for mine, theirs, fused, theirs_ones in zip(grads, expected_grads, fused_grads, ones):
        assert mine.dtype == np.dtype(dtype) and mine.shape == tuple(theirs.shape)
        support.assert_close(mine, theirs.numpy(), dtype, "backward")
        support.assert_close(fused, theirs_ones.numpy(), dtype, "value_and_grad gradient")


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_user_distance_spec_matches_torch(userpkg, dtype, reduction, swap):
    arrays = triplet((7, 5), dtype, seed=3)
    check(userpkg.scaled_squared_euclidean, torch_squared_euclidean(), arrays, dtype, reduction, swap, margin=2.0)


def test_user_distance_with_bound_options_and_1d_rows(userpkg):
    distance = functools.partial(userpkg.scaled_squared_euclidean, factor=0.25)
    check(distance, torch_squared_euclidean(0.25), triplet((5,), np.float64, seed=4), np.float64, "mean", swap=True)


@pytest.mark.parametrize("p", [1.0, 3.0])
def test_compiled_distance_with_bound_options(p):
    distance = functools.partial(generated.pairwise_distance, p=p)
    reference = functools.partial(torch.nn.functional.pairwise_distance, p=p)
    check(distance, reference, triplet((6, 4), np.float64, seed=5), np.float64, "sum", swap=False)


def test_user_distance_gradient_matches_finite_differences(userpkg):
    arrays = triplet((4, 3), np.float64, seed=6)
    keywords = dict(distance_function=userpkg.scaled_squared_euclidean, swap=True, margin=3.0, reduction="sum")
    grads = generated.triplet_margin_with_distance_loss_backward(np.float64(1.0), *arrays, **keywords)
    step = 1e-6
    for position, grad in enumerate(grads):
        numeric = np.zeros_like(grad)
        for index in np.ndindex(grad.shape):
            shifted = [a.copy() for a in arrays]
            shifted[position][index] += step
            up = float(generated.triplet_margin_with_distance_loss(*shifted, **keywords))
            shifted[position][index] -= 2 * step
            down = float(generated.triplet_margin_with_distance_loss(*shifted, **keywords))
            numeric[index] = (up - down) / (2 * step)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)
    assert np.any(grads[0] != 0), "the sample must sit off the hinge's flat side"


@pytest.mark.parametrize("function", [
    lambda a, b: np.abs(a - b).sum(-1),
    functools.partial(np.subtract),  # a partial of something losscc did not compile
    "pairwise_distance",
])
def test_plain_callable_raises_type_error_that_explains_specs(function):
    arrays = triplet((3, 4), np.float32, seed=7)
    with pytest.raises(TypeError, match=r"compiled by losscc.*spec.*losscc build"):
        generated.triplet_margin_with_distance_loss(*arrays, distance_function=function)
    with pytest.raises(TypeError, match="compiled by losscc"):
        generated.triplet_margin_with_distance_loss_value_and_grad(*arrays, distance_function=function)


def test_the_tutorial_distance_is_one_minus_cosine_similarity():
    x1, x2, _ = triplet((5, 6), np.float64, seed=8)
    np.testing.assert_allclose(generated.cosine_distance(x1, x2), 1 - generated.cosine_similarity(x1, x2), rtol=0, atol=1e-15)
    expected = 1 - torch.nn.functional.cosine_similarity(torch.tensor(x1), torch.tensor(x2))
    np.testing.assert_allclose(generated.cosine_distance(x1, x2), expected.numpy(), rtol=1e-12, atol=1e-15)


# torch's conventions at the kinks of the pair losses, on inputs that sit exactly on them
def torch_grads(function, arrays, keywords, grad_output=None):
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    value = function(*tensors, **keywords)
    go = torch.ones_like(value) if grad_output is None else torch.tensor(grad_output)
    return value.detach().numpy(), [g.numpy() for g in torch.autograd.grad(value, tensors, go)]


KINKS = {
    # positive == anchor: d(anchor, negative) == d(positive, negative), a tie of the swap's min
    "swap_tie": ("triplet_margin_loss", lambda: [np.array([[0.5, -1.0, 2.0]]), np.array([[0.5, -1.0, 2.0]]),
                                                 np.array([[1.5, 0.0, 1.0]])], dict(swap=True, margin=2.0)),
    # margin + d(a, p) - d(a, n) == 0 exactly (integers, eps = 0): clamp_min passes the gradient
    "hinge_zero": ("triplet_margin_loss", lambda: [np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]),
                                                   np.array([[2.0, 0.0]])], dict(margin=1.0, eps=0.0, p=1.0)),
    # two coordinates share the largest |difference|: the inf-norm's gradient is split between them
    "max_tie": ("pairwise_distance", lambda: [np.array([[3.0, -3.0, 1.0]]), np.array([[1.0, -1.0, 0.0]])],
                dict(p=float("inf"), eps=0.0)),
    # a zero vector: its norm is clamped at eps straight through (the gradient is not zeroed)
    "zero_norm": ("cosine_similarity", lambda: [np.zeros((2, 3)), np.array([[1.0, 2.0, -1.0], [0.0, 0.0, 0.0]])], {}),
    # a zero difference with p = 2: the norm's subgradient there is 0
    "zero_distance": ("pairwise_distance", lambda: [np.ones((1, 4)), np.ones((1, 4))], dict(eps=0.0)),
}


@pytest.mark.parametrize("case", list(KINKS))
def test_pair_kinks_follow_torch(case):
    name, make, keywords = KINKS[case]
    arrays = make()
    grad_output = None
    expected, expected_grads = torch_grads(getattr(torch.nn.functional, name), arrays, keywords)
    if expected.ndim:  # a distance: a random grad_output per row
        grad_output = np.random.default_rng(2).standard_normal(expected.shape)
        expected, expected_grads = torch_grads(getattr(torch.nn.functional, name), arrays, keywords, grad_output)
    value = getattr(generated, name)(*arrays, **keywords)
    grads = getattr(generated, name + "_backward")(np.float64(1.0) if grad_output is None else grad_output, *arrays, **keywords)
    np.testing.assert_allclose(value, expected, rtol=1e-14, atol=1e-15)
    for mine, theirs in zip(grads, expected_grads):
        np.testing.assert_allclose(mine, theirs, rtol=1e-14, atol=1e-15)
    # the cases are built so that torch's gradient is not zero everywhere, except the one about zero
    assert any(np.any(g != 0) for g in expected_grads) == (case != "zero_distance"), "the sample misses its kink"


# ---- the default distance runs triplet_margin_loss's fused kernel (Distance.fused) ------------

@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the calls that reach triplet_margin_loss's functions through the chain."""
    import importlib

    module = importlib.import_module("generated.triplet_margin_loss")
    counts = {"n": 0}
    for suffix in ("", "_backward", "_value_and_grad"):
        name = "triplet_margin_loss" + suffix
        original = getattr(module, name)

        def counted(*args, _original=original, **kwargs):
            counts["n"] += 1
            return _original(*args, **kwargs)
        monkeypatch.setattr(module, name, counted)
    return counts


@pytest.mark.parametrize("distance", [None, "pairwise_distance"])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_default_distance_runs_the_fused_loss(fused_calls, dtype, reduction, swap, distance):
    """Its three entry points go to triplet_margin_loss, give its bits, and match torch's
    default distance (check: forward, backward with a random grad_output, value_and_grad)."""
    function = None if distance is None else generated.pairwise_distance
    arrays = triplet((9, 6), dtype, seed=7)
    check(function, None, arrays, dtype, reduction, swap, margin=0.75)
    assert fused_calls["n"] == 3  # check() calls our forward, backward and value_and_grad once each
    keywords = dict(margin=0.75, swap=swap, reduction=reduction)
    value, grads = generated.triplet_margin_with_distance_loss_value_and_grad(*arrays, distance_function=function, **keywords)
    reference, reference_grads = generated.triplet_margin_loss_value_and_grad(*arrays, **keywords)
    assert value.tobytes() == reference.tobytes() and value.dtype == reference.dtype
    assert all(g.tobytes() == r.tobytes() for g, r in zip(grads, reference_grads))
    out = tuple(np.full_like(a, np.nan) for a in arrays)
    _, written = generated.triplet_margin_with_distance_loss_value_and_grad(*arrays, distance_function=function, out=out,
                                                                           **keywords)
    assert all(w is o for w, o in zip(written, out)) and all(o.tobytes() == r.tobytes() for o, r in zip(out, reference_grads))


NOT_FUSED = {  # calls the chain keeps: another distance, bound options, broadcasting, promotion
    "cosine": (lambda: triplet((5, 4), np.float64, 8), lambda: generated.cosine_distance,
               lambda: (lambda a, b: 1.0 - torch.nn.functional.cosine_similarity(a, b))),
    "bound_p": (lambda: triplet((5, 4), np.float64, 8), lambda: functools.partial(generated.pairwise_distance, p=2.0),
                lambda: None),
    "broadcast": (lambda: (triplet((5, 4), np.float64, 8)[0], triplet((1, 4), np.float64, 9)[1], triplet((5, 4), np.float64, 10)[2]),
                  lambda: None, lambda: None),
    "mixed_dtypes": (lambda: (triplet((5, 4), np.float32, 8)[0], *triplet((5, 4), np.float64, 9)[1:]), lambda: None,
                     lambda: None),
}


@pytest.mark.parametrize("case", list(NOT_FUSED))
def test_other_calls_stay_with_the_chain(fused_calls, case):
    make, distance, torch_distance = NOT_FUSED[case]
    arrays = make()
    value, grads = generated.triplet_margin_with_distance_loss_value_and_grad(*arrays, distance_function=distance(), swap=True)
    assert fused_calls["n"] == 0
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    expected = torch.nn.functional.triplet_margin_with_distance_loss(*tensors, distance_function=torch_distance(), swap=True)
    expected_grads = torch.autograd.grad(expected, tensors)
    assert value.dtype == expected.detach().numpy().dtype
    support.assert_close(value, expected.detach().numpy(), np.float32 if case == "mixed_dtypes" else np.float64, "value")
    for mine, theirs in zip(grads, expected_grads):
        assert mine.shape == tuple(theirs.shape) and mine.dtype == theirs.numpy().dtype
        support.assert_close(mine, theirs.numpy(), np.float32 if case == "mixed_dtypes" else np.float64, "gradient")


@pytest.mark.parametrize("keywords, message", [
    (dict(reduction="elementwise_mean"), "elementwise_mean is not a valid value for reduction"),
    (dict(margin=0.0), "margin must be greater than 0, got 0.0"),
])
def test_a_fused_call_raises_the_chains_errors(fused_calls, keywords, message):
    """triplet_margin_loss accepts 'elementwise_mean' (torch's C++ reductions do): the chain's
    own checks run first, so the default distance raises as torch's Python loss does."""
    arrays = triplet((3, 2), np.float64, 11)
    with pytest.raises(ValueError, match=message):
        torch.nn.functional.triplet_margin_with_distance_loss(*(torch.tensor(a) for a in arrays), **keywords)
    with pytest.raises(ValueError, match=message):
        generated.triplet_margin_with_distance_loss_value_and_grad(*arrays, **keywords)
    assert fused_calls["n"] == 0


def test_a_fused_spec_must_match_the_chains_signature():
    """check_fused rejects a fused spec whose option defaults differ from the chain's, or from
    the default distance's: the two would then not be one loss."""
    import dataclasses
    from pathlib import Path

    from compiler.lang import Real
    from compiler.load import load_specs
    from compiler.pair import check_fused
    from compiler.printer import SpecError

    loaded = load_specs(Path(__file__).resolve().parent.parent / "specs")
    check_fused(loaded)  # the shipped specs hold
    for option, default, complaint in (("margin", 2.0, "its option 'margin' must be a Real with default 1.0"),
                                       ("eps", 1e-8, "its option 'eps' (default 1e-08) must have the default of pairwise_distance")):
        changed = []
        for item in loaded:
            if item.spec.name == "triplet_margin_loss":
                params = tuple(dataclasses.replace(p, default=default) if isinstance(p, Real) and p.name == option else p
                               for p in item.spec.params)
                item = dataclasses.replace(item, spec=dataclasses.replace(item.spec, params=params))
            changed.append(item)
        with pytest.raises(SpecError, match=re.escape(complaint)):
            check_fused(changed)
