"""ctc_loss beyond the registry suites: every target layout and reduction against torch forward and
torch.autograd.grad (float32 against torch in float64: torch's own float32 gradient is off by up to
1.7e-4), impossible alignments with and without zero_infinity, zero probabilities, exact_gradient
against finite differences, and every validation error naming its sample."""
from __future__ import annotations

import numpy as np
import pytest

import support
from compiler import lang

torch = pytest.importorskip("torch")
F = torch.nn.functional

import generated as G  # noqa: E402

SPEC = next(l.spec for l in support.LOSSES if l.name == "ctc_loss")


def sample(rng, steps=10, samples=4, classes=5, longest=4, blank=0):
    """Random normalised log_probs (T, N, C), padded labels avoiding blank, feasible lengths."""
    logits = rng.standard_normal((steps, samples, classes))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    labels = np.array([c for c in range(classes) if c != blank])
    targets = rng.choice(labels, size=(samples, longest))
    target_lengths = rng.integers(1, longest + 1, samples)
    input_lengths = rng.integers(2 * longest + 1, steps + 1, samples)
    return log_probs, targets, input_lengths, target_lengths


def concatenated(targets, target_lengths):
    return np.concatenate([t[:n] for t, n in zip(targets, target_lengths)])


def torch_reference(log_probs, targets, input_lengths, target_lengths, go, **kwargs):
    """torch in float64: the loss and its gradient for grad_output ``go``."""
    lp = torch.tensor(np.asarray(log_probs, dtype=np.float64), requires_grad=True)
    as_tensor = lambda v: torch.tensor(np.asarray(v)) if isinstance(v, np.ndarray) else v  # noqa: E731
    loss = F.ctc_loss(lp, as_tensor(targets), as_tensor(input_lengths), as_tensor(target_lengths), **kwargs)
    (grad,) = torch.autograd.grad(loss, lp, torch.tensor(np.asarray(go, dtype=np.float64)))
    return loss.detach().numpy(), grad.numpy()


def check(log_probs, targets, input_lengths, target_lengths, rng, **kwargs):
    """Forward, backward with a random grad_output and value_and_grad against torch (float64)."""
    dtype = np.asarray(log_probs).dtype
    value = G.ctc_loss(log_probs, targets, input_lengths, target_lengths, **kwargs)
    go = rng.standard_normal(np.shape(value)).astype(dtype)
    want_value, want_grad = torch_reference(log_probs, targets, input_lengths, target_lengths, go, **kwargs)
    scale = 1.0 + np.nanmax(np.abs(np.where(np.isfinite(want_grad), want_grad, 0.0)))
    rtol, atol = (1e-6, 1e-5 * scale) if dtype == np.float32 else (1e-12, 1e-12 * scale)
    assert value.dtype == dtype and value.shape == want_value.shape
    np.testing.assert_allclose(value, want_value, rtol=rtol, atol=rtol, equal_nan=True)
    (grad, *rest) = G.ctc_loss_backward(go, log_probs, targets, input_lengths, target_lengths, **kwargs)
    assert rest == [None, None, None] and grad.dtype == dtype and grad.shape == np.shape(log_probs)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=atol, equal_nan=True)
    fused_value, (fused_grad, *_) = G.ctc_loss_value_and_grad(log_probs, targets, input_lengths, target_lengths, **kwargs)
    _, ones_grad = torch_reference(log_probs, targets, input_lengths, target_lengths, np.ones(np.shape(value)), **kwargs)
    np.testing.assert_allclose(fused_value, want_value, rtol=rtol, atol=rtol, equal_nan=True)
    np.testing.assert_allclose(fused_grad, ones_grad, rtol=rtol, atol=atol, equal_nan=True)


LAYOUTS = ["padded", "concatenated", "lists", "int32", "unbatched", "unbatched_listed"]


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_and_reductions_match_torch(layout, dtype, reduction, rng):
    log_probs, targets, input_lengths, target_lengths = sample(rng)
    if layout == "concatenated":
        targets = concatenated(targets, target_lengths)
    elif layout == "lists":
        input_lengths, target_lengths = input_lengths.tolist(), target_lengths.tolist()
    elif layout == "int32":
        targets, input_lengths, target_lengths = (a.astype(np.int32) for a in (targets, input_lengths, target_lengths))
    elif layout == "unbatched":
        log_probs, targets = log_probs[:, 0], targets[0, :target_lengths[0]]  # (S,): the whole target
        input_lengths, target_lengths = np.asarray(input_lengths[0]), np.asarray(target_lengths[0])
    elif layout == "unbatched_listed":  # lengths as one-element lists
        log_probs, targets = log_probs[:, 0], targets[0, :target_lengths[0]]
        input_lengths, target_lengths = input_lengths[:1].tolist(), target_lengths[:1].tolist()
    before = support.copies({"lp": log_probs, "t": targets})
    check(log_probs.astype(dtype), targets, input_lengths, target_lengths, rng, reduction=reduction)
    support.assert_unchanged(before, {"lp": log_probs, "t": targets})


@pytest.mark.parametrize("blank", [2, 4])
def test_nonzero_blank_and_repeated_labels(blank, rng):
    log_probs, targets, input_lengths, target_lengths = sample(rng, steps=12, blank=blank)
    targets[:, 1] = targets[:, 0]  # a repeat needs a blank between: the skip transition is masked
    check(log_probs, targets, input_lengths, target_lengths, rng, blank=blank, reduction="none")


@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_impossible_alignments(zero_infinity, reduction, rng):
    """Too few steps for the target: inf (nan gradient for t < input_length) or zeros."""
    log_probs, targets, input_lengths, target_lengths = sample(rng)
    targets[1, :2] = 1
    target_lengths[1], input_lengths[1] = 2, 2  # a repeated label needs 3 steps
    input_lengths[2], target_lengths[2] = 0, 1  # no step at all
    value = G.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none", zero_infinity=zero_infinity)
    assert (value[1], value[2]) == ((0.0, 0.0) if zero_infinity else (np.inf, np.inf))
    check(log_probs, targets, input_lengths, target_lengths, rng, reduction=reduction, zero_infinity=zero_infinity)
    (grad, *_) = G.ctc_loss_backward(np.float64(1.0), log_probs, targets, input_lengths, target_lengths,
                                     reduction="sum", zero_infinity=zero_infinity)
    assert np.all(grad[2:, 1] == 0.0)
    assert np.all(grad[:2, 1] == 0.0) if zero_infinity else np.all(np.isnan(grad[:2, 1]))


def test_empty_targets_and_inputs(rng):
    """target length 0: -sum_t lp[t, blank]; input and target length 0: 0."""
    log_probs, targets, input_lengths, target_lengths = sample(rng)
    target_lengths[0] = 0
    input_lengths[3], target_lengths[3] = 0, 0
    value = G.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none")
    assert value[0] == pytest.approx(-log_probs[: input_lengths[0], 0, 0].sum(), rel=1e-12)
    assert value[3] == 0.0
    check(log_probs, targets, input_lengths, target_lengths, rng, reduction="mean")


def test_zero_probabilities_and_nan(rng):
    """-inf log-probabilities (zero probabilities) are ordinary: the loss and every other gradient
    element are torch's; at the -inf elements torch's gradient is nan (its exp(lp) - exp(... - lp)
    is -inf - -inf there) and ours is the limit, 0, as the spec's notes say. A nan gives nan."""
    assert support.note_mentions(SPEC, "-inf", "nan", "limit")
    log_probs, targets, input_lengths, target_lengths = sample(rng, steps=12)
    log_probs[3, 0, :] = -np.inf
    log_probs[3, 0, 0] = 0.0  # only the blank at t = 3 of sample 0
    log_probs[5, 1, targets[1, 0]] = -np.inf
    go = rng.standard_normal(4)
    value = G.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none")
    (grad, *_) = G.ctc_loss_backward(go, log_probs, targets, input_lengths, target_lengths, reduction="none")
    want_value, want_grad = torch_reference(log_probs, targets, input_lengths, target_lengths, go, reduction="none")
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    zero = np.isneginf(log_probs)
    assert np.all(np.isnan(want_grad[zero])) and np.all(grad[zero] == 0.0)
    np.testing.assert_allclose(grad[~zero], want_grad[~zero], rtol=1e-12, atol=1e-12)
    log_probs[2, 2, 1] = np.nan
    value = G.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none")
    want, _ = torch_reference(log_probs, targets, input_lengths, target_lengths, np.ones(4), reduction="none")
    np.testing.assert_array_equal(np.isnan(value), np.isnan(want))


def test_nan_where_no_alignment_passes(rng):
    """The sweeps cover only the states an alignment can pass through: a nan elsewhere (a label
    too far along the target for its step, or too early to finish it) changes neither the loss
    nor any other gradient element, with either gradient convention."""
    assert support.note_mentions(SPEC, "nan", "no alignment passes")
    steps, longest = 12, 4
    log_probs, targets, input_lengths, target_lengths = sample(rng, steps=steps, longest=longest)
    targets[0] = [1, 2, 3, 4]
    target_lengths[0], input_lengths[0] = longest, steps
    clean_value, (clean_exact, *_) = G.ctc_loss_value_and_grad(
        log_probs, targets, input_lengths, target_lengths, reduction="none", exact_gradient=True)
    _, (clean_grad, *_) = G.ctc_loss_value_and_grad(log_probs, targets, input_lengths, target_lengths, reduction="none")
    # label 4 (extended state 7) at t = 1, t = 2 (states <= 2t + 1 are reachable); label 1 (state 1)
    # at the last two steps (an alignment there cannot reach the end of the target)
    for t, label in ((0, 3), (1, 4), (2, 4), (steps - 1, 1), (steps - 2, 1)):
        poisoned = log_probs.copy()
        poisoned[t, 0, label] = np.nan
        value, (exact, *_) = G.ctc_loss_value_and_grad(
            poisoned, targets, input_lengths, target_lengths, reduction="none", exact_gradient=True)
        _, (grad, *_) = G.ctc_loss_value_and_grad(poisoned, targets, input_lengths, target_lengths, reduction="none")
        np.testing.assert_array_equal(value, clean_value)
        np.testing.assert_array_equal(exact, clean_exact)  # the nan element's exact gradient is 0, as before
        others = ~np.isnan(poisoned)
        np.testing.assert_array_equal(grad[others], clean_grad[others])
        assert np.isnan(grad[t, 0, label])  # torch's convention: exp(nan) at the element itself


def test_float32_is_closer_to_float64_than_torchs_float32(rng):
    """Accumulated in float64: our float32 gradient is within float32 rounding of torch's float64."""
    log_probs, targets, input_lengths, target_lengths = sample(rng, steps=60, longest=20, classes=8)
    go = np.float32(1.0)
    (grad,) = G.ctc_loss_backward(go, log_probs.astype(np.float32), targets, input_lengths, target_lengths)[:1]
    _, want = torch_reference(log_probs.astype(np.float32), targets, input_lengths, target_lengths, 1.0)
    assert np.max(np.abs(grad - want)) <= 1e-6 * (1 + np.max(np.abs(want)))


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
@pytest.mark.parametrize("normalised", [True, False])
def test_exact_gradient_matches_finite_differences(reduction, normalised, rng):
    log_probs, targets, input_lengths, target_lengths = sample(rng, steps=8, samples=3, longest=3)
    if not normalised:
        log_probs = rng.standard_normal(log_probs.shape)
    go = rng.standard_normal(() if reduction != "none" else (3,))
    kwargs = dict(reduction=reduction, exact_gradient=True)
    (grad, *_) = G.ctc_loss_backward(go, log_probs, targets, input_lengths, target_lengths, **kwargs)

    def f(lp):
        return float(np.sum(go * G.ctc_loss(lp, targets, input_lengths, target_lengths, **kwargs)))

    h = 1e-6
    for index in np.ndindex(log_probs.shape):
        plus, minus = log_probs.copy(), log_probs.copy()
        plus[index] += h
        minus[index] -= h
        assert grad[index] == pytest.approx((f(plus) - f(minus)) / (2 * h), abs=1e-7), index


def test_torch_convention_is_exact_plus_exp(rng):
    """The default gradient equals the exact one plus exp(log_probs) * grad_output for t < input_length."""
    log_probs, targets, input_lengths, target_lengths = sample(rng)
    go = rng.standard_normal(4)
    (exact, *_) = G.ctc_loss_backward(go, log_probs, targets, input_lengths, target_lengths, reduction="none",
                                      exact_gradient=True)
    (conventional, *_) = G.ctc_loss_backward(go, log_probs, targets, input_lengths, target_lengths, reduction="none")
    used = np.arange(log_probs.shape[0])[:, None] < input_lengths[None, :]
    expected = exact + np.where(used[..., None], np.exp(log_probs) * go[None, :, None], 0.0)
    np.testing.assert_allclose(conventional, expected, rtol=1e-12, atol=1e-12)


def test_signature_and_exact_option_is_keyword_only():
    import inspect

    params = inspect.signature(G.ctc_loss).parameters
    assert params["exact_gradient"].kind is inspect.Parameter.KEYWORD_ONLY
    assert [p.name for p in SPEC.params if isinstance(p, lang.Option)] == ["exact_gradient"]


# ---------------------------------------------------------------------------------------------
# validation: each violation a ValueError naming the sample, before any kernel runs
# ---------------------------------------------------------------------------------------------

def _bad(rng, name):
    log_probs, targets, input_lengths, target_lengths = sample(rng, steps=10, samples=3, longest=3)
    target_lengths[:] = 2
    kwargs = {}
    if name == "label_too_large":
        targets[1, 1] = 5
    elif name == "label_negative":
        targets[1, 1] = -1
    elif name == "label_is_blank":
        targets[1, 1] = 0
    elif name == "input_length_negative":
        input_lengths[1] = -1
    elif name == "input_length_too_long":
        input_lengths[1] = 11
    elif name == "target_length_negative":
        target_lengths[1] = -1
    elif name == "target_length_too_long":
        target_lengths[1] = 4
    elif name == "concatenated_total":
        targets = concatenated(targets, target_lengths)[:-1]
    elif name == "lengths_size":
        input_lengths = input_lengths[:2]
    elif name == "targets_rows":
        targets = targets[:2]
    elif name == "blank_out_of_range":
        kwargs["blank"] = 5
    elif name == "float_lengths":
        input_lengths = input_lengths.astype(np.float64)
    elif name == "four_dims":
        log_probs = log_probs[..., None]
    elif name == "empty_batch":
        log_probs, targets, input_lengths, target_lengths = log_probs[:, :0], targets[:0], input_lengths[:0], target_lengths[:0]
    return (log_probs, targets, input_lengths, target_lengths), kwargs


SAMPLE_ONE = ["label_too_large", "label_negative", "label_is_blank", "input_length_negative",
              "input_length_too_long", "target_length_negative", "target_length_too_long"]
OTHERS = ["concatenated_total", "lengths_size", "targets_rows", "blank_out_of_range", "float_lengths",
          "four_dims", "empty_batch"]


@pytest.mark.parametrize("name", SAMPLE_ONE + OTHERS)
def test_validation_errors(name, rng):
    args, kwargs = _bad(rng, name)
    with support.kernel_stubs(SPEC):
        for call in (lambda: G.ctc_loss(*args, **kwargs),
                     lambda: G.ctc_loss_backward(np.float64(1.0), *args, **kwargs),
                     lambda: G.ctc_loss_value_and_grad(*args, **kwargs)):
            with pytest.raises(ValueError) as error:
                call()
            assert "kernel ran" not in str(error.value)
            if name in SAMPLE_ONE:
                assert "sample 1" in str(error.value), str(error.value)
    # torch rejects these too, or reads out of bounds (labels): never a result to compare
    if name not in ("label_too_large", "label_negative", "label_is_blank"):
        with pytest.raises((RuntimeError, TypeError, ValueError, IndexError)):
            F.ctc_loss(*[torch.tensor(a) if isinstance(a, np.ndarray) else a for a in args], **kwargs)
