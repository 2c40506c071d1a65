"""float32 arithmetic (a spec's ``float32_arithmetic``) is no less accurate than torch's.

Those kernels compute float32 data in float32, as torch does, but with the expressions sympy
derived, which may group terms differently from torch's formula. So each such loss gets inputs
made to cancel (data of equal large magnitude, differences near the kinks, probabilities next to
0 and 1, variances over twelve decades), and every element of its float32 loss and gradients
must be within max(4 x torch's float32 error, 16 float32 ulps, 4 ulps of 1.0) of torch computed
in float64 on the same float32 inputs. (Our float32 exp and log are within 2 ulps where torch's
are within 1, and a small difference of O(1) terms, such as bce's target gradient log(1 - x) -
log(x), magnifies that in ulps of the result, for torch's formula too.) A sum that
rounds ``-beta/2 + input`` before subtracting ``target`` misses by orders of magnitude (checked
by printing sums in sympy's order, and with bce_with_logits flagged: x(1 - t) + softplus(-x)
cancels where torch's formula does not). Elements where torch in float64 is not finite are
test_extremes' business (soft_margin_loss's documented overflow difference).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import support
from compiler import lang

OFFSETS = np.array([0.0, 3.0, -40.0, 1e3, -3e4, 1e6], dtype=np.float64)
ELEMENTS = 4096


def flagged(loaded: Any) -> bool:
    return bool(loaded.spec.float32_arithmetic)


def cancelling_args(spec: lang.Loss, options: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """float32 arrays: data of one domain share a large offset per element, so that their
    differences cancel; scalar options as given."""
    offset = rng.choice(OFFSETS, ELEMENTS)
    spread = 10.0 ** rng.uniform(-4, 1, ELEMENTS)  # differences from 1e-4 to 10
    kinks = [float(options.get(p.name, p.default)) for p in spec.params if isinstance(p, lang.Real)]
    args: dict[str, Any] = {}
    for p in spec.params:
        if isinstance(p, (lang.Tensor, lang.OptionalTensor)):
            if isinstance(p, lang.OptionalTensor) and options.get(p.name) is not support.PRESENT:
                continue
            domain = getattr(p, "domain", "real")
            if domain in ("real", "any"):
                values = offset + spread * rng.standard_normal(ELEMENTS)
                for kink in kinks:  # a quarter of the differences sit next to a kink
                    near = rng.random(ELEMENTS) < 0.25 / max(len(kinks), 1)
                    values[near] = offset[near] + kink * (1 + 1e-3 * rng.standard_normal(int(near.sum())))
            elif domain in ("unit", "prob"):
                values = np.concatenate([rng.uniform(0, 1, ELEMENTS // 2),
                                         0.5 + 0.5 * rng.choice([-1, 1], ELEMENTS - ELEMENTS // 2)
                                         * (1 - 10.0 ** rng.uniform(-7, -1, ELEMENTS - ELEMENTS // 2))])
            elif domain == "positive":
                values = 10.0 ** rng.uniform(-6, 6, ELEMENTS)
            elif domain == "sign":
                values = rng.choice([-1.0, 1.0], ELEMENTS)
            else:  # pragma: no cover - a flagged spec with a new domain must be taught here
                raise AssertionError(f"test_precision does not know the domain {domain!r}")
            args[p.name] = values.astype(np.float32)
        elif isinstance(p, lang.Real):
            args[p.name] = float(options.get(p.name, p.default))
        elif isinstance(p, lang.Flag) and p.name in options:
            args[p.name] = options[p.name]
        elif isinstance(p, lang.Reduction):
            args[p.name] = "none"
    return args


def check(name: str, ours: np.ndarray, torch32: np.ndarray, exact: np.ndarray) -> None:
    ours, torch32 = ours.astype(np.float64), torch32.astype(np.float64)
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf where torch overflows: excluded below
        torch_error = np.abs(torch32 - exact)
        bound = np.maximum(np.maximum(4 * torch_error, 16 * ulp), 4 * np.spacing(np.float32(1)))
        good = (np.abs(ours - exact) <= bound) | (ours == exact) | ~np.isfinite(exact)
    if not good.all():
        i = int(np.argmin(good))
        raise AssertionError(
            f"{name}: {int((~good).sum())} of {good.size} elements beyond the bound; first at {i}: "
            f"losscc {ours[i]!r}, torch float32 {torch32[i]!r}, float64 {exact[i]!r}"
        )


def precision_cases() -> list[Any]:
    """The spec's option combinations, and each Real at 0.3 too: the tests' usual 0.5 and 2.0 are
    dyadic, so beta / 2 is a multiple of ulp(1e6) in float32 and cancels exactly at any offset."""
    result = support.cases(flagged, with_reductions=False)
    for loaded in support.LOSSES:
        for p in loaded.spec.params if flagged(loaded) else ():
            if isinstance(p, lang.Real):
                result.append(pytest.param(loaded, {p.name: 0.3}, id=f"{loaded.name}-{p.name}=0.3"))
    return result


@pytest.mark.parametrize("loaded,options", precision_cases())
def test_float32_arithmetic_is_as_accurate_as_torch(loaded: Any, options: dict[str, Any]) -> None:
    spec = loaded.spec
    args = cancelling_args(spec, options, np.random.default_rng(support.seed_of(spec.name, options)))
    ones = np.ones(ELEMENTS, dtype=np.float32)
    torch32 = support.run_torch(spec, args, grad_output=ones)
    exact = support.run_torch(spec, args, grad_output=ones.astype(np.float64), as_float64=True)
    assert torch32.error is None and exact.error is None, (torch32.error, exact.error)
    positional, keywords = support.split_args(spec, args)
    value, grads = support.ours(spec, "_value_and_grad")(*positional, **keywords)
    assert value.dtype == np.float32
    check(f"{spec.name} loss", value, torch32.value, exact.value)
    names = [p.name for p in spec.params if isinstance(p, lang.Tensor)]
    compared = 0
    for name, grad in zip(names, grads):
        if name in torch32.grads and grad is not None:
            check(f"{spec.name} d/d{name}", grad, torch32.grads[name], exact.grads[name])
            compared += 1
    assert compared, "no gradient compared"

