"""torch's deprecated size_average / reduce arguments and reduction='elementwise_mean':
accepted (with torch's warning) exactly where torch accepts them, rejected with a ValueError
exactly where torch rejects them; values and gradients as torch's."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import support
from support import LOSSES, has_legacy, make_args
from test_parity import check_against_torch

LEGACY = list(itertools.product([None, True, False], repeat=2))


@pytest.mark.parametrize("size_average,reduce", LEGACY, ids=[f"size_average={a}-reduce={b}" for a, b in LEGACY])
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("loaded,options", support.cases(lambda s: has_legacy(s.spec), with_reductions=False))
def test_legacy_arguments(loaded, options, reduction, size_average, reduce, rng):
    """Either legacy argument not None overrides ``reduction`` and warns, as torch."""
    spec = loaded.spec
    args = make_args(spec, options, "matrix", np.float64, rng, reduction)
    args["size_average"] = size_average
    args["reduce"] = reduce
    what = f"{spec.name}({support.options_id(options)}, size_average={size_average}, reduce={reduce}, reduction={reduction!r})"
    check_against_torch(spec, args, reduction, np.float64, rng, what)


@pytest.mark.parametrize("loaded", [l for l in LOSSES if not has_legacy(l.spec)], ids=support.loss_id)
@pytest.mark.parametrize("name", ["size_average", "reduce"])
def test_no_legacy_arguments_where_torch_has_none(loaded, name, rng):
    spec = loaded.spec
    args = make_args(spec, {}, "vector", np.float64, rng, "mean")
    args[name] = True
    theirs = support.run_torch(spec, args, want_grads=False)
    mine = support.run_ours(spec, args)
    assert theirs.error is not None
    support.assert_error_compatible(theirs.error, mine.error, f"{spec.name}({name}=True)")


@pytest.mark.parametrize("loaded,options", support.cases(with_reductions=False))
def test_elementwise_mean(loaded, options, rng):
    """'elementwise_mean': 'mean' with a deprecation warning on torch's C++-reduced path, a
    ValueError on its Python-reduced paths (weighted l1/mse/huber, poisson, gaussian, ...)."""
    spec = loaded.spec
    args = make_args(spec, options, "matrix", np.float64, rng, "elementwise_mean")
    what = f"{spec.name}({support.options_id(options)}, reduction='elementwise_mean')"
    check_against_torch(spec, args, "mean", np.float64, rng, what)
