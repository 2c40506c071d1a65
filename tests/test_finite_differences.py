"""Gradients against float64 central finite differences of the scalar losses, independent of
torch: every loss, option combination, reduction other than 'none', every differentiable
argument, at seeded random points. Elements sitting at a kink (left and right difference
quotients disagree) and elements where a straight-through clamp is active (torch's deliberate
non-derivative, e.g. gaussian_nll_loss's var below eps) are not compared."""
from __future__ import annotations

import numpy as np
import pytest
import sympy

import support
from support import differentiable_names, make_args, required
from compiler import lang
from compiler.derive import variants
from compiler.primitives import clamp_min_st


def straight_through_mask(loaded, options, args):
    """Broadcast-shaped mask of elements where a clamp_min_st of the spec is clamping."""
    spec = loaded.spec
    if support.kind(spec) != "elementwise":
        return None
    flags = {p.name: options.get(p.name, p.default) for p in spec.params if isinstance(p, lang.Flag)}
    present = {p.name: p.name in args for p in spec.params if isinstance(p, lang.OptionalTensor)}
    for variant in variants(loaded.path, spec):
        if dict(variant.flags) == flags and dict(variant.present) == present:
            break
    else:
        return None
    clamps = list(variant.loss.atoms(clamp_min_st))
    if not clamps:
        return None
    arrays = [n for n in variant.arrays]
    shapes = [np.shape(args[n]) for n in arrays]
    shape = np.broadcast_shapes(*shapes)
    values = {variant.symbols[n]: np.broadcast_to(np.asarray(args[n], dtype=np.float64), shape) for n in arrays}
    for r in variant.reals:
        p = next(p for p in spec.params if p.name == r)
        values[variant.symbols[r]] = float(args.get(r, p.default))
    mask = np.zeros(shape, dtype=bool)
    for clamp in clamps:
        v, lo = clamp.args
        fv = sympy.lambdify(list(values), v, "numpy")(*values.values())
        flo = sympy.lambdify(list(values), lo, "numpy")(*values.values())
        mask |= np.broadcast_to(np.asarray(fv) < np.asarray(flo), shape)
    return mask


def reduced_cases():
    result = []
    for param in support.cases():
        loaded, options, reduction = param.values
        if reduction != "none" or support.reductions(loaded.spec) == ("none",):  # distances: per row
            result.append(param)
    return result


@pytest.mark.parametrize("loaded,options,reduction", reduced_cases())
def test_gradient_matches_finite_differences(loaded, options, reduction, rng):
    spec = loaded.spec
    family = "matrix" if support.is_row(spec) else "vector"
    args = make_args(spec, options, family, np.float64, rng, reduction)
    fn = support.ours(spec)
    positional, keywords = support.split_args(spec, args)
    recurrence = getattr(spec, "recurrence", None)
    if recurrence is not None and recurrence.exact_option:
        keywords[recurrence.exact_option] = True  # the default gradient follows torch's convention
    names = [p.name for p in required(spec)]
    with support.record_warnings():
        shape = np.shape(fn(*positional, **keywords))
    # a distance (one value per row): differentiate sum(weights * value), weights the grad_output
    weights = rng.standard_normal(shape) if shape else np.float64(1.0)

    def f(replace_name, array):
        call = [array if n == replace_name else a for n, a in zip(names, positional)]
        with support.record_warnings():
            return float(np.sum(weights * fn(*call, **keywords)))

    with support.record_warnings():
        grads = support.ours(spec, "_backward")(weights, *positional, **keywords)
    wanted = differentiable_names(spec, args)
    if not wanted:
        pytest.skip("no differentiable argument")
    clamped = straight_through_mask(loaded, options, args)
    compared = 0
    for name, grad in zip(names, grads):
        if name not in wanted:
            assert grad is None
            continue
        x = np.array(args[name], dtype=np.float64)
        for index in np.ndindex(x.shape):
            if clamped is not None and np.shape(args[name]) == clamped.shape and clamped[index]:
                continue
            h = 1e-6 * max(1.0, abs(x[index]))
            plus, minus = x.copy(), x.copy()
            plus[index] += h
            minus[index] -= h
            f0, fp, fm = f(name, x), f(name, plus), f(name, minus)
            left, right = (f0 - fm) / h, (fp - f0) / h
            scale = 1.0 + abs(left) + abs(right)
            if abs(left - right) > 1e-3 * scale:
                continue  # a kink inside [x - h, x + h]
            central = (fp - fm) / (2 * h)
            assert abs(grad[index] - central) <= 1e-5 * scale, (
                f"{spec.name}({support.options_id(options)}, reduction={reduction!r}): d/d{name}{index}: "
                f"losscc {grad[index]!r}, finite differences {central!r}"
            )
            compared += 1
    assert compared, "every element sat on a kink: the sample is useless"
