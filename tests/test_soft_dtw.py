"""soft_dtw, which torch lacks: against a plain NumPy implementation of Cuturi and Blondel's
recurrence written here, gradients against central finite differences (float64), float32 against
float64, reductions, grad_output, and the argument errors."""
from __future__ import annotations

import numpy as np
import pytest

import support

import generated as G

SPEC = next(l.spec for l in support.LOSSES if l.name == "soft_dtw")


def reference(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    """R[i, j] = |x_i - y_j|^2 + softmin_gamma(R[i-1, j-1], R[i-1, j], R[i, j-1]), R[0, 0] = 0."""
    T, U = len(x), len(y)
    R = np.full((T + 1, U + 1), np.inf)
    R[0, 0] = 0.0
    for i in range(1, T + 1):
        for j in range(1, U + 1):
            previous = -np.array([R[i - 1, j - 1], R[i - 1, j], R[i, j - 1]]) / gamma
            top = previous.max()
            softmin = -gamma * (top + np.log(np.exp(previous - top).sum()))
            R[i, j] = np.sum((x[i - 1] - y[j - 1]) ** 2) + softmin
    return float(R[T, U])


def batch(rng, samples=3, steps=6, other=5, features=2, dtype=np.float64):
    return (rng.standard_normal((samples, steps, features)).astype(dtype),
            rng.standard_normal((samples, other, features)).astype(dtype))


@pytest.mark.parametrize("gamma", [0.01, 0.5, 1.0, 10.0])
@pytest.mark.parametrize("shape", [(3, 6, 5, 2), (2, 1, 7, 3), (2, 8, 1, 1), (1, 4, 4, 5)])
def test_forward_matches_reference(shape, gamma, rng):
    x, y = batch(rng, *shape)
    value = G.soft_dtw(x, y, gamma=gamma, reduction="none")
    expected = [reference(a, b, gamma) for a, b in zip(x, y)]
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)
    assert G.soft_dtw(x, y, gamma=gamma, reduction="sum") == pytest.approx(sum(expected), rel=1e-12)
    assert G.soft_dtw(x, y, gamma=gamma) == pytest.approx(np.mean(expected), rel=1e-12)


def test_unbatched_and_small_gamma_tends_to_dtw(rng):
    x, y = batch(rng, 1, 5, 4, 1)
    value = G.soft_dtw(x[0], y[0], gamma=1e-4, reduction="none")
    assert value.shape == () and value == pytest.approx(reference(x[0], y[0], 1e-4), rel=1e-10)
    # classic DTW: the minimum over alignments, which soft-DTW approaches from below as gamma -> 0
    D = ((x[0][:, None, :] - y[0][None, :, :]) ** 2).sum(-1)
    R = np.full((6, 5), np.inf)
    R[0, 0] = 0.0
    for i in range(1, 6):
        for j in range(1, 5):
            R[i, j] = D[i - 1, j - 1] + min(R[i - 1, j - 1], R[i - 1, j], R[i, j - 1])
    assert value <= R[5, 4] + 1e-12 and value == pytest.approx(R[5, 4], abs=1e-3)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("gamma", [0.1, 1.0])
def test_gradients_match_finite_differences(reduction, gamma, rng):
    x, y = batch(rng, 2, 5, 4, 2)
    go = rng.standard_normal(() if reduction != "none" else (2,))
    gx, gy = G.soft_dtw_backward(go, x, y, gamma=gamma, reduction=reduction)
    value, (fx, fy) = G.soft_dtw_value_and_grad(x, y, gamma=gamma, reduction=reduction)
    np.testing.assert_array_equal(value, G.soft_dtw(x, y, gamma=gamma, reduction=reduction))

    def f(a, b):
        return float(np.sum(go * G.soft_dtw(a, b, gamma=gamma, reduction=reduction)))

    h = 1e-6
    for grad, which in ((gx, 0), (gy, 1)):
        base = (x, y)[which]
        for index in np.ndindex(base.shape):
            plus, minus = base.copy(), base.copy()
            plus[index] += h
            minus[index] -= h
            args_plus = (plus, y) if which == 0 else (x, plus)
            args_minus = (minus, y) if which == 0 else (x, minus)
            central = (f(*args_plus) - f(*args_minus)) / (2 * h)
            assert grad[index] == pytest.approx(central, rel=1e-5, abs=1e-6), (which, index)
    ones = np.ones(np.shape(value))
    for a, b in zip((fx, fy), G.soft_dtw_backward(ones, x, y, gamma=gamma, reduction=reduction)):
        np.testing.assert_allclose(a, b, rtol=1e-15)


def test_float32_matches_float64(rng):
    x, y = batch(rng, 4, 9, 7, 3)
    wide, (wx, wy) = G.soft_dtw_value_and_grad(x, y, reduction="none")
    narrow, (nx, ny) = G.soft_dtw_value_and_grad(x.astype(np.float32), y.astype(np.float32), reduction="none")
    assert narrow.dtype == nx.dtype == ny.dtype == np.float32
    expected, _ = G.soft_dtw_value_and_grad(x.astype(np.float32).astype(np.float64),
                                            y.astype(np.float32).astype(np.float64), reduction="none")
    np.testing.assert_allclose(narrow, expected, rtol=1e-6)
    np.testing.assert_allclose(nx, wx, rtol=1e-3, atol=1e-4)


def test_inputs_unchanged_and_noncontiguous(rng):
    x, y = batch(rng, 3, 6, 5, 2)
    xt = np.asfortranarray(x)
    before = support.copies({"x": xt, "y": y})
    value = G.soft_dtw(xt, y[:, ::1], reduction="none")
    np.testing.assert_allclose(value, G.soft_dtw(x, y, reduction="none"), rtol=1e-15)
    support.assert_unchanged(before, {"x": xt, "y": y})


ERRORS = {
    "features differ": lambda x, y: (x, y[..., :1]),
    "batches differ": lambda x, y: (x, y[:2]),
    "batched and not": lambda x, y: (x[0], y),
    "empty sequence": lambda x, y: (x[:, :0], y),
    "one dimension": lambda x, y: (x[0, 0], y[0, 0]),
    "integers": lambda x, y: (x.astype(np.int64), y),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_before_any_kernel(name, rng):
    x, y = ERRORS[name](*batch(rng))
    with support.kernel_stubs(SPEC):
        with pytest.raises(ValueError) as error:
            G.soft_dtw(x, y)
    assert "kernel ran" not in str(error.value) and str(error.value)


@pytest.mark.parametrize("gamma", [0.0, -1.0, float("nan")])
def test_gamma_must_be_positive(gamma, rng):
    with pytest.raises(ValueError, match="gamma"):
        G.soft_dtw(*batch(rng), gamma=gamma)
