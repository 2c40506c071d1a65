"""A user writes a new spec (log-cosh), compiles it with the command line into a package of their
own, imports it, and gets a loss that matches a numpy reference and finite differences."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import support

LOG_COSH = textwrap.dedent(
    '''
    from compiler.lang import Legacy, Loss, OptionalTensor, Reduction, Tensor, log, softplus


    def element(input, target, weight):
        # log(cosh(d)) = d + softplus(-2 d) - log(2): no overflow for large |d|
        d = input - target
        return weight * (d + softplus(-2 * d) - log(2))


    SPEC = Loss(
        name="log_cosh_loss",
        summary="Log-cosh loss: quadratic near zero, linear far away, smooth everywhere.",
        params=(
            Tensor("input", differentiable=True),
            Tensor("target", differentiable=True),
            Reduction("mean"),
            OptionalTensor("weight", doc="per-element weight"),
        ),
        element=element,
    )
    '''
)


@pytest.fixture(scope="module")
def mypkg(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    for module in support.compiled_user_package(root, "mypkg", {"log_cosh_loss": LOG_COSH}):
        assert (root / "docs" / "losses" / "log_cosh_loss.tex").exists()
        yield module


def reference(d):
    d = np.asarray(d, dtype=np.float64)
    return np.abs(d) + np.log1p(np.exp(-2 * np.abs(d))) - np.log(2.0)


def test_exports(mypkg):
    assert tuple(mypkg.LOSSES) == ("log_cosh_loss",)
    for suffix in ("", "_backward", "_value_and_grad"):
        assert callable(getattr(mypkg, "log_cosh_loss" + suffix))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_matches_numpy_reference(mypkg, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 5)).astype(dtype) * 3
    t = rng.standard_normal((6, 5)).astype(dtype)
    w = rng.uniform(0.1, 2, (6, 5)).astype(dtype)
    expected = reference(x.astype(np.float64) - t.astype(np.float64))
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    none = mypkg.log_cosh_loss(x, t, reduction="none")
    assert none.dtype == dtype and none.shape == x.shape
    np.testing.assert_allclose(none, expected, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(mypkg.log_cosh_loss(x, t, reduction="sum"), expected.sum(), rtol=rtol)
    np.testing.assert_allclose(mypkg.log_cosh_loss(x, t), expected.mean(), rtol=rtol)
    np.testing.assert_allclose(mypkg.log_cosh_loss(x, t, weight=w, reduction="sum"), (w * expected).sum(), rtol=rtol)
    grads = mypkg.log_cosh_loss_backward(np.ones_like(none), x, t, reduction="none")
    np.testing.assert_allclose(grads[0], np.tanh(x.astype(np.float64) - t), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(grads[1], -np.tanh(x.astype(np.float64) - t), rtol=rtol, atol=rtol)


def test_no_overflow_far_from_zero(mypkg):
    d = np.array([1000.0, -1000.0, 1e300, 0.0])
    value = mypkg.log_cosh_loss(d, np.zeros(4), reduction="none")
    np.testing.assert_allclose(value, [1000 - np.log(2), 1000 - np.log(2), 1e300, 0.0], rtol=1e-15)
    grads = mypkg.log_cosh_loss_backward(np.ones(4), d, np.zeros(4), reduction="none")
    np.testing.assert_allclose(grads[0], [1.0, -1.0, 1.0, 0.0])


def test_finite_differences(mypkg):
    rng = np.random.default_rng(11)
    x, t = rng.standard_normal(8), rng.standard_normal(8)
    for reduction in ("sum", "mean"):
        loss, (gx, gt) = mypkg.log_cosh_loss_value_and_grad(x, t, reduction=reduction)
        for i in range(8):
            h = 1e-6
            xp, xm = x.copy(), x.copy()
            xp[i] += h
            xm[i] -= h
            fd = (mypkg.log_cosh_loss(xp, t, reduction=reduction) - mypkg.log_cosh_loss(xm, t, reduction=reduction)) / (2 * h)
            assert gx[i] == pytest.approx(fd, rel=1e-6, abs=1e-9)
        np.testing.assert_allclose(gt, -gx, rtol=1e-15)


def test_errors_are_value_errors(mypkg):
    with pytest.raises(ValueError):
        mypkg.log_cosh_loss(np.ones(3), np.ones(3), reduction="bogus")
    with pytest.raises(ValueError):
        mypkg.log_cosh_loss(np.ones(3), np.ones(2))
    with pytest.raises(ValueError):
        mypkg.log_cosh_loss(np.array(["a"]), np.ones(1))
