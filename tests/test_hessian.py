"""Second derivatives: compiler.derive.variants(...)[i].hessian_diagonal() against central finite
differences of the (lambdified) derived gradients, and the gradients against finite differences of
the derived loss, at random points of each tensor's domain away from kinks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import sympy

import support
from compiler import lang
from compiler.derive import variants

BCE_EPS = 1e-12

NAMESPACE = {
    "softplus": lambda z: max(z, 0.0) + math.log1p(math.exp(-abs(z))),
    "sigmoid": lambda z: 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z)),
    "ratio": lambda x, y: x / y,
    "xlogy": lambda x, y: 0.0 if x == 0 else x * math.log(y),
    "clamp_min_st": lambda v, lo: lo if v < lo else v,
    "clamp_min_ad": lambda z, lo: lo if z < lo else z,
    "bce_term": lambda x, y: -(y * max(math.log(x), -100.0) + (1 - y) * max(math.log1p(-x), -100.0)),
    "indicator": lambda c: 1.0 if c else 0.0,
    "two_forms": lambda value, differentiated: value,
    "where": lambda c, x, y: x if c else y,
    "DiracDelta": lambda *args: 0.0,  # second derivative of |d| away from d = 0
    "Heaviside": lambda x, *args: 1.0 if x > 0 else (0.0 if x < 0 else 0.5),
    "log1p": math.log1p,
}


def elementwise_variants():
    result = []
    for loaded in support.LOSSES:
        if support.kind(loaded.spec) != "elementwise":
            continue
        for variant in variants(loaded.path, loaded.spec):
            result.append(pytest.param(loaded, variant, id=f"{loaded.name}-{variant.key}"))
    return result


def compile_expr(variant, expr):
    names = list(variant.arrays) + list(variant.reals)
    symbols = [variant.symbols[n] for n in names]
    return names, sympy.lambdify(symbols, expr, modules=[NAMESPACE, "math"])


@pytest.mark.parametrize("loaded,variant", elementwise_variants())
def test_hessian_diagonal_matches_finite_differences(loaded, variant):
    spec = loaded.spec
    rng = np.random.default_rng(support.seed_of(loaded.name, variant.key))
    params = {p.name: p for p in spec.params}
    hessian = dict(variant.hessian_diagonal())
    gradients = dict(variant.gradients)
    assert set(hessian) == set(gradients) == {p.name for p in spec.params if isinstance(p, lang.Tensor) and p.differentiable}
    loss_names, loss_fn = compile_expr(variant, variant.loss)
    compared = 0
    for name, grad_expr in gradients.items():
        names, grad_fn = compile_expr(variant, grad_expr)
        _, hess_fn = compile_expr(variant, hessian[name])
        for _ in range(8):
            point = {}
            for n in names:
                p = params[n]
                if isinstance(p, lang.Real):
                    point[n] = float(p.default)
                else:
                    point[n] = float(support.sample(getattr(p, "domain", "positive"), (), np.float64, rng))
            x0 = point[name]
            h = 1e-5 * max(1.0, abs(x0))

            def at(fn, value):
                return float(fn(*[value if n == name else point[n] for n in names]))

            g0, gp, gm = at(grad_fn, x0), at(grad_fn, x0 + h), at(grad_fn, x0 - h)
            left, right = (g0 - gm) / h, (gp - g0) / h
            scale = 1.0 + abs(left) + abs(right)
            if abs(left - right) > 1e-3 * scale:
                continue  # a kink of the gradient
            assert at(hess_fn, x0) == pytest.approx((gp - gm) / (2 * h), rel=1e-5, abs=1e-6 * scale), (
                f"{loaded.name} {variant.key}: d2/d{name}2 at {point}"
            )
            # and the gradient itself against the loss
            f0, fp, fm = at(loss_fn, x0), at(loss_fn, x0 + h), at(loss_fn, x0 - h)
            if abs((f0 - fm) / h - (fp - f0) / h) <= 1e-3 * (1 + abs(g0)):
                assert g0 == pytest.approx((fp - fm) / (2 * h), rel=1e-5, abs=1e-6 * (1 + abs(g0)))
            compared += 1
    if gradients:
        assert compared, "no point away from kinks"


@pytest.mark.parametrize("name", ["mse_loss", "huber_loss", "binary_cross_entropy_with_logits", "poisson_nll_loss"])
def test_known_hessians(name):
    """Closed forms: mse 2w; huber w inside delta, 0 outside; bce_with_logits w(1+(pw-1)y)s(1-s);
    poisson exp(x)."""
    loaded = next((l for l in support.LOSSES if l.name == name), None)
    if loaded is None:
        pytest.skip(f"no spec {name} yet")
    # every Flag at its default, no optional tensor
    defaults = {p.name: p.default for p in loaded.spec.params if isinstance(p, lang.Flag)}
    variant = next(v for v in variants(loaded.path, loaded.spec)
                   if dict(v.flags) == defaults and not any(given for _, given in v.present))
    hessian = dict(variant.hessian_diagonal())
    s = variant.symbols
    if name == "mse_loss":
        assert sympy.simplify(hessian["input"] - 2) == 0
    elif name == "huber_loss":
        _, fn = compile_expr(variant, hessian["input"])
        assert fn(0.3, 0.0, 1.0) == pytest.approx(1.0) and fn(3.0, 0.0, 1.0) == pytest.approx(0.0)
    elif name == "binary_cross_entropy_with_logits":
        names, fn = compile_expr(variant, hessian["input"])
        sig = 1 / (1 + math.exp(-0.7))
        assert fn(*[0.7 if n == "input" else 0.4 for n in names]) == pytest.approx(sig * (1 - sig), rel=1e-12)
    elif name == "poisson_nll_loss":
        names, fn = compile_expr(variant, hessian["input"])
        assert fn(*[0.5 if n == "input" else 1e-8 if n == "eps" else 1.5 for n in names]) == pytest.approx(
            math.exp(0.5), rel=1e-12)
