"""Shared machinery of the test-suite: the spec registry, sample generation per domain, option
enumeration, calling torch and losscc side by side, and tolerant comparison.

Everything here is driven by the specs: adding ``specs/NAME.py`` (and rebuilding ``generated``)
adds its tests without touching ``tests/``.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import itertools
import math
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from compiler import lang
from compiler.load import LoadedSpec, load_specs

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# parameter classes that may not exist in every version of the spec language
ClassTarget = getattr(lang, "ClassTarget", None)
Int = getattr(lang, "Int", None)

CLASSES = 5  # size of the class axis of row losses
DTYPES = (np.float32, np.float64)
BASE_REDUCTIONS = ("none", "sum", "mean")


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------

def registry() -> list[LoadedSpec]:
    """Every spec under specs/, as the compiler loads them (sorted by loss name)."""
    return load_specs(SPECS)


LOSSES = registry()


def loss_id(loaded: LoadedSpec) -> str:
    return loaded.name


def _cosine_distance(x1: Any, x2: Any, dim: int = 1, eps: float = 1e-8) -> Any:
    """The torch tutorials' distance, 1 - cosine_similarity: losscc's cosine_distance spec."""
    import torch.nn.functional as F

    return 1 - F.cosine_similarity(x1, x2, dim, eps)


# specs whose torch counterpart is an expression rather than a function of torch.nn.functional
TORCH_REFERENCES: dict[str, Callable[..., Any]] = {"cosine_distance": _cosine_distance}


def torch_function(spec: lang.Loss) -> Callable[..., Any]:
    import torch.nn.functional as F

    if spec.name in TORCH_REFERENCES:
        return TORCH_REFERENCES[spec.name]
    if spec.torch_name == "none":  # e.g. soft_dtw: its own test file checks it against a reference
        pytest.skip(f"{spec.name} has no torch counterpart (see tests/test_{spec.name}.py)")
    return getattr(F, spec.torch_name or spec.name)


def extensions(spec: lang.Loss) -> set[str]:
    """Keyword-only losscc options that torch's signature lacks (lang.Option)."""
    return {p.name for p in spec.params if type(p).__name__ == "Option"}


def generated_module():
    return importlib.import_module("generated")


def ours(spec: lang.Loss, suffix: str = "") -> Callable[..., Any]:
    module = generated_module()
    name = spec.name + suffix
    if not hasattr(module, name):
        pytest.fail(f"generated has no {name}: is the package built from the specs? (run `losscc build`)")
    return getattr(module, name)


def kind(spec: lang.Loss) -> str:
    return getattr(spec, "kind", "elementwise")


def is_row(spec: lang.Loss) -> bool:
    return kind(spec) == "row"


def is_pair(spec: lang.Loss) -> bool:
    """Pair losses and chains of distances: rows of features (the last axis)."""
    return kind(spec) in ("pair", "chain")


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------

def params_of(spec: lang.Loss, *classes: Any) -> list[Any]:
    classes = tuple(c for c in classes if c is not None)
    return [p for p in spec.params if isinstance(p, classes)]


def required(spec: lang.Loss) -> list[Any]:
    """Parameters without a default, in signature order: Tensor and ClassTarget."""
    return params_of(spec, lang.Tensor, ClassTarget)


def has_legacy(spec: lang.Loss) -> bool:
    return bool(params_of(spec, lang.Legacy))


def reductions(spec: lang.Loss) -> tuple[str, ...]:
    if not params_of(spec, lang.Reduction):  # a distance: one value per row, no reduction argument
        return ("none",)
    return BASE_REDUCTIONS + tuple(name for name, _ in spec.extra_reductions)


def note_mentions(spec: lang.Loss, *words: str) -> bool:
    text = " ".join(spec.notes).lower()
    return all(w.lower() in text for w in words)


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __deepcopy__(self, memo: Any) -> "_Marker":
        return self


PRESENT = _Marker("PRESENT")  # an OptionalTensor given: sampled like input
PROBABILITIES = _Marker("PROBABILITIES")  # a ClassTarget given as class probabilities


def option_combos(spec: lang.Loss) -> list[dict[str, Any]]:
    """Every Flag both ways x every OptionalTensor absent/present x (ClassTarget as indices or
    probabilities) x (nothing, or one of spec.test_options merged in). Deduplicated."""
    axes: list[list[tuple[str, Any]]] = []
    for p in spec.params:
        if isinstance(p, lang.Flag):
            axes.append([(p.name, v) for v in getattr(p, "values", (False, True))])
        elif isinstance(p, lang.OptionalTensor):
            axes.append([(p.name, None), (p.name, PRESENT)])
        elif ClassTarget is not None and isinstance(p, ClassTarget) and p.probabilities_switch:
            axes.append([(p.name, None), (p.name, PROBABILITIES)])
    combos = []
    seen = set()
    extras: list[dict[str, Any]] = [{}] + [dict(o) for o in spec.test_options]
    for values in itertools.product(*axes):
        base = {k: v for k, v in values if v is not None and not _is_flag_default(spec, k, v)}
        for extra in extras:
            combo = {**base, **extra}
            key = options_id(combo)
            if key not in seen:
                seen.add(key)
                combos.append(combo)
    return combos


def _is_flag_default(spec: lang.Loss, name: str, value: Any) -> bool:
    return any(isinstance(p, lang.Flag) and p.name == name and type(p.default) is type(value)
               and p.default == value for p in spec.params)


def _default(spec: lang.Loss, name: str) -> Any:
    for p in spec.params:
        if p.name == name:
            return getattr(p, "default", None)
    return None


def options_id(options: dict[str, Any]) -> str:
    if not options:
        return "defaults"
    parts = []
    for k, v in sorted(options.items()):
        if v is PRESENT:
            parts.append(k)
        elif v is PROBABILITIES:
            parts.append(f"{k}=probs")
        elif isinstance(v, np.ndarray):
            parts.append(f"{k}=array{v.shape}")
        else:
            parts.append(f"{k}={v!r}")
    return ",".join(parts)


def cases(spec_filter: Callable[[LoadedSpec], bool] = lambda s: True, with_reductions: bool = True) -> list[Any]:
    """pytest.param(loaded, options[, reduction]) for every loss, option combination, reduction."""
    result = []
    for loaded in LOSSES:
        if not spec_filter(loaded):
            continue
        for options in option_combos(loaded.spec):
            if with_reductions:
                for reduction in reductions(loaded.spec):
                    result.append(pytest.param(loaded, options, reduction,
                                               id=f"{loaded.name}-{options_id(options)}-{reduction}"))
            else:
                result.append(pytest.param(loaded, options, id=f"{loaded.name}-{options_id(options)}"))
    return result


def seed_of(*parts: Any) -> int:
    return zlib.crc32(repr(parts).encode())


# ---------------------------------------------------------------------------------------------
# samples
# ---------------------------------------------------------------------------------------------

def sample(domain: str, shape: tuple[int, ...], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """Random values of a tensor domain (see compiler.lang.Domain)."""
    if domain in ("real", "any"):
        values = rng.standard_normal(shape)
    elif domain == "unit":
        values = rng.uniform(0.05, 0.95, shape)
    elif domain == "positive":
        values = rng.uniform(0.1, 2.0, shape)
    elif domain == "sign":
        values = rng.choice([-1.0, 1.0], size=shape)
    elif domain == "prob":
        values = rng.uniform(0.0, 1.0, shape)
    elif domain == "labels":  # class labels of a row, -1 ending the list (multilabel_margin_loss)
        return rng.integers(-1, shape[-1] if shape else CLASSES, size=shape).astype(np.int64)
    else:  # pragma: no cover - a new domain must be taught to the tests
        raise AssertionError(f"the tests do not know the domain {domain!r}")
    return np.asarray(values, dtype=dtype)


def _layout(p: Any) -> str:
    return getattr(p, "layout", "elements")


# Shape families. Elementwise: the shape of every tensor (broadcast families give the others a
# trailing shape). Row losses: the shape of input (class axis 1, or 0 for a 1-D input).
ELEMENTWISE_FAMILIES: dict[str, tuple[tuple[int, ...], tuple[int, ...]] | None] = {
    "scalar": ((), ()),
    "vector": ((7,), (7,)),
    "matrix": ((4, 5), (4, 5)),
    "kdim": ((3, 4, 5), (3, 4, 5)),
    "empty": ((0,), (0,)),
    "empty2d": ((2, 0), (2, 0)),
    "transposed": ((3, 4, 5), (3, 4, 5)),
    "strided": ((7,), (7,)),
    "bcast_rest": ((3, 4, 5), (4, 5)),
    "bcast_first": ((4, 5), (3, 4, 5)),
}
ROW_FAMILIES: dict[str, tuple[int, ...] | None] = {
    "scalar": None,
    "vector": (CLASSES,),
    "matrix": (4, CLASSES),
    "kdim": (3, CLASSES, 2, 2),
    "empty": (0, CLASSES),
    "empty2d": (2, CLASSES, 0),
    "transposed": (4, CLASSES),
    "strided": (4, CLASSES),
    "bcast_rest": None,
    "bcast_first": None,
}
# Pair losses: the shapes of the first and of the other feature tensors (features last); a 'row'
# tensor (cosine_embedding's target) gets the broadcast shape without the feature axis.
PAIR_FAMILIES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "scalar": ((5,), (5,)),
    "vector": ((4, 5), (4, 5)),
    "matrix": ((6, 3), (6, 3)),
    "kdim": ((3, 4, 5), (3, 4, 5)),
    "empty": ((0, 5), (0, 5)),
    "empty2d": ((3, 0), (3, 0)),
    "transposed": ((4, 5), (4, 5)),
    "strided": ((4, 5), (4, 5)),
    "bcast_rest": ((4, 5), (1, 5)),
    "bcast_first": ((1, 5), (4, 5)),
}
FAMILIES = tuple(ELEMENTWISE_FAMILIES)


def compiled_distance(name: str) -> Callable[..., Any]:
    """A Distance test option names a compiled distance of ``generated``."""
    return getattr(generated_module(), name)


def torch_distance(function: Any) -> Any:
    """The torch counterpart of a compiled distance (or a functools.partial of one); anything
    else is passed to torch unchanged."""
    import functools

    import torch.nn.functional as F

    base, keywords = function, {}
    if isinstance(function, functools.partial):
        base, keywords = function.func, dict(function.keywords)
    if not callable(getattr(base, "losscc_backward", None)):
        return function
    name = base.__name__
    reference = TORCH_REFERENCES.get(name) or getattr(F, name)
    return functools.partial(reference, **keywords) if keywords else reference


def _make(domain: str, shape: tuple[int, ...], dtype: Any, rng: np.random.Generator, family: str) -> np.ndarray:
    """A sample of ``shape``; non-contiguous for the 'transposed' and 'strided' families."""
    if family == "transposed" and len(shape) >= 2:
        base = sample(domain, shape[::-1], dtype, rng)
        array = base.transpose()
        assert not array.flags.c_contiguous
        return array
    if family == "strided" and len(shape) >= 1 and shape[-1] > 0:
        base = sample(domain, shape[:-1] + (2 * shape[-1],), dtype, rng)
        array = base[..., ::2]
        assert not array.flags.c_contiguous
        return array
    return sample(domain, shape, dtype, rng)


def _row_target_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    return () if len(input_shape) == 1 else (input_shape[0],) + input_shape[2:]


def _int_default(spec: lang.Loss, name: str, options: dict[str, Any]) -> Any:
    return options.get(name, _default(spec, name))


def make_args(
    spec: lang.Loss,
    options: dict[str, Any],
    family: str,
    dtype: Any,
    rng: np.random.Generator,
    reduction: str | None = "mean",
) -> dict[str, Any]:
    """Keyword arguments of one call (tensors as numpy arrays), in signature order.

    Raises pytest.skip.Exception where the family does not apply to the loss."""
    if kind(spec) == "recurrence":  # coordinated lengths and sequences: see recurrence_samples.py
        from recurrence_samples import make_recurrence_args

        return make_recurrence_args(spec, options, family, dtype, rng, reduction)
    args: dict[str, Any] = {}
    if is_row(spec):
        input_shape = ROW_FAMILIES.get(family)
        if input_shape is None:
            pytest.skip(f"the shape family {family!r} does not apply to a row loss (class axis required)")
        if getattr(spec, "class_axis", 1) == -1 and len(input_shape) > 2:
            # classes on the last axis: move the class axis of the family's shape there
            input_shape = (input_shape[0],) + input_shape[2:] + (input_shape[1],)
        shapes = {"first": input_shape, "rest": input_shape}
    elif is_pair(spec):
        first, rest = PAIR_FAMILIES[family]
        shapes = {"first": first, "rest": rest,
                  "row": np.broadcast_shapes(first, rest)[:-1]}
    else:
        first, rest = ELEMENTWISE_FAMILIES[family]
        shapes = {"first": first, "rest": rest}
    first_tensor = True
    input_shape_elem: tuple[int, ...] | None = None
    for p in spec.params:
        given = options.get(p.name, None)
        if isinstance(p, lang.Tensor):
            if p.name in options and given is not PRESENT:  # a test option gives the value
                args[p.name] = copy.deepcopy(given)
                first_tensor = False
                continue
            shape = shapes["first"] if first_tensor else shapes["rest"]
            if _layout(p) == "classes":
                shape = (CLASSES,)
            if _layout(p) == "row":
                shape = shapes["row"]
            args[p.name] = _make(p.domain, shape, dtype, rng, family)
            if first_tensor:
                input_shape_elem = shape
            first_tensor = False
        elif ClassTarget is not None and isinstance(p, ClassTarget):
            ishape = shapes["first"]
            if given is PROBABILITIES:
                args[p.name] = _make("prob", ishape, dtype, rng, family)
            else:
                tshape = _row_target_shape(ishape)
                target = rng.integers(0, CLASSES, size=tshape if family != "strided" else
                                      tshape[:-1] + (2 * tshape[-1],) if tshape else tshape).astype(np.int64)
                if family == "strided" and tshape:
                    target = target[..., ::2]
                ignore = getattr(spec, "ignore_index", "")
                if ignore:
                    value = _int_default(spec, ignore, options)
                    if target.size and value is not None:
                        mask = rng.uniform(size=target.shape) < 0.25
                        target = np.where(mask, value, target).astype(np.int64)
                args[p.name] = target
            first_tensor = False
        elif isinstance(p, lang.OptionalTensor):
            if given is PRESENT:
                shape = (CLASSES,) if _layout(p) == "classes" else input_shape_elem
                args[p.name] = _make(p.domain, shape, dtype, rng, family)
            elif given is not None:
                args[p.name] = copy.deepcopy(given)
        elif isinstance(p, (lang.Real, lang.Flag)) or (Int is not None and isinstance(p, Int)):
            if p.name in options:
                args[p.name] = options[p.name]
        elif isinstance(p, lang.Reduction):
            if reduction is not None:
                args[p.name] = reduction
        elif type(p).__name__ == "Distance":
            if p.name in options:
                given = options[p.name]
                args[p.name] = compiled_distance(given) if isinstance(given, str) else given
        elif isinstance(p, lang.Legacy):
            if p.name in options:
                args[p.name] = options[p.name]
    for k, v in options.items():  # options naming no parameter are passed through as they are
        if k not in args and not any(p.name == k for p in spec.params):
            args[k] = v
    return args


def differentiable_names(spec: lang.Loss, args: dict[str, Any]) -> list[str]:
    """The arguments torch differentiates: differentiable Tensors given as float arrays (torch
    cannot differentiate integer or bool tensors, and losscc returns None for them), and class
    probability targets."""
    names = []
    for p in spec.params:
        value = args.get(p.name)
        if isinstance(p, lang.Tensor) and p.differentiable and isinstance(value, np.ndarray) and value.dtype.kind == "f":
            names.append(p.name)
        elif ClassTarget is not None and isinstance(p, ClassTarget):
            value = args.get(p.name)
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                names.append(p.name)
    return names


def split_args(spec: lang.Loss, args: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """(positional: the required arguments, keywords: the rest)."""
    names = [p.name for p in required(spec)]
    return [args[n] for n in names], {k: v for k, v in args.items() if k not in names}


def copies(args: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v)) for k, v in args.items()}


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    for k, v in before.items():
        if isinstance(v, np.ndarray):
            assert after[k].dtype == v.dtype and after[k].shape == v.shape, f"argument {k} was replaced"
            np.testing.assert_array_equal(after[k], v, err_msg=f"argument {k} was modified in place")


# ---------------------------------------------------------------------------------------------
# running torch and losscc
# ---------------------------------------------------------------------------------------------

def _is_user_warning(w: warnings.WarningMessage) -> bool:
    try:
        from numba.core.errors import NumbaWarning
    except ImportError:  # pragma: no cover
        NumbaWarning = ()  # type: ignore
    return issubclass(w.category, UserWarning) and not issubclass(w.category, NumbaWarning)


@dataclass
class Outcome:
    value: Any = None
    grads: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    grad_error: BaseException | None = None  # torch's autograd failed (forward still compared)
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def record_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def to_torch(args: dict[str, Any], grad_names: list[str]) -> dict[str, Any]:
    import torch

    result = {}
    for k, v in args.items():
        v = torch_distance(v) if callable(v) else v
        if isinstance(v, np.ndarray):
            t = torch.tensor(np.array(v))
            if k in grad_names and t.dtype.is_floating_point:  # torch differentiates floats only
                t.requires_grad_(True)
            result[k] = t
        else:
            result[k] = v
    return result


def run_torch(spec: lang.Loss, args: dict[str, Any], grad_output: Any = None, want_grads: bool = True,
              as_float64: bool = False) -> Outcome:
    """torch's value, its gradients for the differentiable arguments (grad_output given, or a
    random one chosen by the caller), and its warnings. ``as_float64`` casts float arrays to
    float64 first (the correctly rounded reference for float32 inputs)."""
    import torch

    if kind(spec) == "recurrence" and not as_float64 and any(
            isinstance(v, np.ndarray) and v.dtype == np.float32 for v in args.values()):
        # torch's float32 ctc gradient is off by up to 1.7e-4 (numba-performance notes); ours
        # accumulates in float64: the reference is torch in float64, rounded to float32
        return _narrowed(run_torch(spec, args, grad_output, want_grads, as_float64=True), np.float32)
    if as_float64:
        args = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
                for k, v in args.items()}
    names = differentiable_names(spec, args) if want_grads else []
    targs = to_torch(args, names)
    positional, keywords = split_args(spec, targs)
    outcome = Outcome()
    with record_warnings() as caught:
        try:
            out = torch_function(spec)(*positional, **keywords)
        except Exception as error:  # noqa: BLE001 - torch's verdict is the reference
            outcome.error = error
            out = None
    outcome.warnings = [normalize(str(w.message)) for w in caught if _is_user_warning(w)]
    if out is None:
        return outcome
    outcome.value = out.detach().numpy().copy()
    if callable(grad_output):
        grad_output = grad_output(outcome.value)
    if names and grad_output is not None:
        go = torch.as_tensor(np.asarray(grad_output, dtype=outcome.value.dtype))
        if out.requires_grad:
            try:
                grads = torch.autograd.grad(out, [targs[n] for n in names], grad_outputs=go, allow_unused=True)
            except Exception as error:  # noqa: BLE001 - e.g. huber's backward with mixed dtypes
                outcome.grad_error = error
                return outcome
        else:
            grads = [None] * len(names)
        for n, g in zip(names, grads):
            # no gradient (pairwise_distance with p=0 counts): zeros, typed like the argument in pair losses
            zero_dtype = targs[n].detach().numpy().dtype if is_pair(spec) else outcome.value.dtype
            outcome.grads[n] = np.zeros(targs[n].shape, dtype=zero_dtype) if g is None else g.numpy().copy()
    return outcome


def _narrowed(outcome: Outcome, dtype: Any) -> Outcome:
    if outcome.value is not None:
        outcome.value = np.asarray(outcome.value).astype(dtype)
    outcome.grads = {k: np.asarray(g).astype(dtype) for k, g in outcome.grads.items()}
    return outcome


def run_ours(spec: lang.Loss, args: dict[str, Any], suffix: str = "", grad_output: Any = None) -> Outcome:
    positional, keywords = split_args(spec, args)
    fn = ours(spec, suffix)
    outcome = Outcome()
    with record_warnings() as caught:
        try:
            if suffix == "_backward":
                outcome.value = fn(grad_output, *positional, **keywords)
            else:
                outcome.value = fn(*positional, **keywords)
        except Exception as error:  # noqa: BLE001
            outcome.error = error
    outcome.warnings = [normalize(str(w.message)) for w in caught if _is_user_warning(w)]
    return outcome


# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------

_SIZE = re.compile(r"torch\.Size\(\[([^\]]*)\]\)")


def _shape_text(match: re.Match[str]) -> str:
    items = [s.strip() for s in match.group(1).split(",") if s.strip()]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def normalize(message: str) -> str:
    """torch prints shapes as torch.Size([3, 1]), losscc as (3, 1): compare modulo that."""
    message = _SIZE.sub(_shape_text, message)
    message = re.sub(r"\[(\d+(?:, \d+)*)\]", lambda m: "(" + m.group(1) + ("," if "," not in m.group(1) else "") + ")", message)
    message = message.replace("[]", "()")
    return " ".join(message.split())


def assert_same_warnings(theirs: list[str], mine: list[str], what: str = "") -> None:
    assert sorted(set(mine)) == sorted(set(theirs)), (
        f"{what}: torch warned {sorted(set(theirs))}, losscc warned {sorted(set(mine))}"
    )


def assert_error_compatible(theirs: BaseException, mine: BaseException | None, what: str = "") -> None:
    """torch raised ``theirs``: we must raise a ValueError, or an exception of torch's type."""
    assert mine is not None, f"{what}: torch raises {type(theirs).__name__}: {theirs}; losscc accepts"
    assert "kernel ran" not in str(mine), (
        f"{what}: torch raises {type(theirs).__name__}: {theirs}; losscc does not reject it (a compiled kernel ran)"
    )
    assert isinstance(mine, ValueError) or isinstance(mine, type(theirs)), (
        f"{what}: torch raises {type(theirs).__name__}, losscc raises {type(mine).__name__}: {mine}"
    )
    assert str(mine).strip(), f"{what}: losscc raised {type(mine).__name__} without a message"


def tolerances(dtype: Any, reference: np.ndarray) -> tuple[float, float]:
    finite = np.abs(reference[np.isfinite(reference)]) if np.size(reference) else np.zeros(0)
    magnitude = float(finite.max()) if finite.size else 0.0
    if np.dtype(dtype) == np.float32:
        return 2e-5, 2e-5 * (1.0 + magnitude)
    return 1e-9, 1e-12 * (1.0 + magnitude)


def assert_close(actual: Any, expected: Any, dtype: Any, what: str, mask: np.ndarray | None = None) -> None:
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, torch {expected.shape}"
    if mask is not None and np.any(mask):
        actual, expected = actual[~mask], expected[~mask]
    rtol, atol = tolerances(dtype, expected)
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol,
                               equal_nan=True, err_msg=what)


def close_elements(actual: np.ndarray, expected: np.ndarray, dtype: Any) -> np.ndarray:
    """Elementwise version of assert_close (nan == nan, inf == inf of the same sign)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    rtol, atol = tolerances(dtype, e)
    with np.errstate(invalid="ignore"):
        same = (a == e) | (np.isnan(a) & np.isnan(e))
        near = np.abs(a - e) <= atol + rtol * np.abs(e)
    return same | (near & np.isfinite(e))


def assert_close_either(actual: Any, first: Any, second: Any, dtype: Any, what: str,
                        mask: np.ndarray | None = None) -> None:
    """Each element equals ``first`` or ``second`` (torch in float32, or torch in float64
    rounded to float32: our kernels compute in float64, so both are acceptable)."""
    actual, first, second = np.asarray(actual), np.asarray(first), np.asarray(second)
    assert actual.shape == first.shape, f"{what}: shape {actual.shape}, torch {first.shape}"
    ok = close_elements(actual, first, dtype) | close_elements(actual, second, dtype)
    if mask is not None:
        ok |= mask
    if not np.all(ok):
        bad = np.argwhere(~ok) if actual.ndim else [()]
        index = tuple(bad[0])
        raise AssertionError(
            f"{what}: {int(np.size(ok) - np.count_nonzero(ok))} of {np.size(ok)} elements differ; first at {index}: "
            f"losscc {actual[index]!r}, torch {first[index]!r} (float64 torch {second[index]!r})"
        )


def random_grad_output(reduction: str, shape: tuple[int, ...], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    if reduction == "none":
        return rng.standard_normal(shape).astype(dtype)
    return np.asarray(rng.standard_normal(), dtype=dtype)


def kernel_stubs(spec: lang.Loss):
    """A context that makes every compiled kernel of the loss raise if it is called; yields False
    when the generated module does not expose its kernels (the check is then skipped)."""
    from numba.core.dispatcher import Dispatcher

    module = importlib.import_module(f"generated.{spec.name}")
    loss = getattr(module, "_LOSS", None)
    variants = getattr(loss, "variants", None)

    class KernelRan(AssertionError):
        pass

    def stub(*args: Any, **kwargs: Any) -> None:
        raise KernelRan("a compiled kernel ran before the arguments were validated")

    @contextlib.contextmanager
    def context():
        if not isinstance(variants, dict):
            yield False
            return
        patched = {
            key: tuple(stub if isinstance(v, Dispatcher) else v for v in value) if isinstance(value, tuple) else value
            for key, value in variants.items()
        }
        loss.variants = patched
        try:
            yield True
        finally:
            loss.variants = variants

    return context()


def signature_of(fn: Callable[..., Any]) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


def math_isclose(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


# ---------------------------------------------------------------------------------------------
# documented deviations from torch: honoured only while the spec's notes document them
# ---------------------------------------------------------------------------------------------

def skip_documented_case(spec: lang.Loss, family: str, reduction: str | None) -> None:
    """Skip whole cases where torch's result is not defined and the spec's notes say so."""
    if (family in ("empty", "empty2d") and reduction not in (None, "none")
            and note_mentions(spec, "empty", "uninitialised")):
        pytest.skip(f"torch returns uninitialised memory for an empty batch; spec note: {_note(spec, 'uninitialised')}")


def _note(spec: lang.Loss, word: str) -> str:
    return next((n for n in spec.notes if word.lower() in n.lower()), "")


def overflow_mask(spec: lang.Loss, theirs: np.ndarray, mine: np.ndarray) -> np.ndarray | None:
    """Elements where torch overflows to inf/nan and losscc stays finite, accepted only where the
    spec's notes document it (soft_margin_loss's stable softplus)."""
    if not note_mentions(spec, "overflow"):
        return None
    theirs, mine = np.asarray(theirs, dtype=np.float64), np.asarray(mine, dtype=np.float64)
    if theirs.shape != mine.shape:
        return None
    return ~np.isfinite(theirs) & np.isfinite(mine)


def compiled_user_package(root: Path, package: str, specs: dict[str, str]) -> Iterator[Any]:
    """Generator for a module-scoped fixture: ``specs`` ({name: source}) written to root/specs,
    compiled with the command line into root/``package`` (docs in root/docs), imported, and
    removed from sys.modules afterwards."""
    import subprocess
    import sys

    (root / "specs").mkdir()
    for name, source in specs.items():
        (root / "specs" / f"{name}.py").write_text(source)
    result = subprocess.run(
        [sys.executable, "-m", "compiler", "build", "--specs", str(root / "specs"),
         "--out", str(root / package), "--docs", str(root / "docs")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(package)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[name]
