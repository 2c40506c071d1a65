"""Samples for the recurrence losses (kind='recurrence'), which need coordinated arguments: CTC's
lengths, label sequences and log-probabilities agree with each other; soft-DTW's two sequence
batches share their batch and feature sizes. support.make_args delegates here.

Shape families, as the registry suites name them: 'scalar' is one unbatched sample; 'vector',
'matrix' and 'kdim' are batches with different layouts of the same data (concatenated targets,
padded targets with list lengths, int32 arrays); 'empty' has no samples and 'empty2d' no time
steps (torch rejects both for ctc); 'transposed' and 'strided' give non-contiguous inputs; 'big'
is a batch above the size that runs on one thread (SERIAL_CELLS), for the thread tests."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from compiler import lang

CLASSES = 6


def _log_probs(shape: tuple[int, ...], dtype: Any, rng: np.random.Generator, family: str) -> np.ndarray:
    """Normalised log-probabilities over the last axis; non-contiguous for those families."""
    if family == "transposed":
        logits = rng.standard_normal(shape[::-1]).transpose()
    elif family == "strided":
        logits = rng.standard_normal(shape[:-1] + (2 * shape[-1],))[..., ::2]
    else:
        logits = rng.standard_normal(shape)
    values = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    if family in ("transposed", "strided"):
        out = np.empty(logits.shape if family == "transposed" else logits.shape[:-1] + (2 * shape[-1],), dtype=dtype)
        view = out if family == "transposed" else out[..., ::2]
        view[...] = values
        return view
    return values.astype(dtype)


def _needed(labels: np.ndarray) -> int:
    """Time steps an alignment of ``labels`` needs: one per label, one more per repeat."""
    return int(len(labels) + np.count_nonzero(labels[1:] == labels[:-1]))


def ctc_args(family: str, dtype: Any, rng: np.random.Generator, blank: int) -> dict[str, Any]:
    unbatched = family == "scalar"
    samples = {"scalar": 1, "vector": 3, "matrix": 4, "kdim": 5, "empty": 0, "empty2d": 3,
               "transposed": 3, "strided": 3, "big": 512}[family]
    steps = {"empty2d": 0, "big": 200}.get(family, 12)
    longest = 4
    labels = np.array([c for c in range(CLASSES) if c != blank])
    target_lengths = rng.integers(0, longest + 1, samples)
    if samples:
        target_lengths[0] = longest
    targets = [rng.choice(labels, size=n) for n in target_lengths]
    input_lengths = np.array([rng.integers(min(_needed(t), steps), steps + 1) for t in targets], dtype=np.int64)
    if family == "kdim":  # one impossible alignment: a repeated label needs 3 steps, it gets 2
        targets[1] = np.array([labels[0], labels[0]])
        target_lengths[1], input_lengths[1] = 2, 2
    log_probs = _log_probs((steps, samples, CLASSES) if not unbatched else (steps, CLASSES), dtype, rng, family)
    padded = np.full((samples, longest), blank, dtype=np.int64)
    for n, t in enumerate(targets):
        padded[n, :len(t)] = t
    if unbatched:
        return {"log_probs": log_probs, "targets": padded[0, :target_lengths[0]], "input_lengths": np.asarray(input_lengths[0]),
                "target_lengths": np.asarray(target_lengths[0])}
    if family == "vector":  # the targets concatenated
        concatenated = np.concatenate([np.asarray(t, dtype=np.int64) for t in targets]) if samples else np.zeros(0, np.int64)
        return {"log_probs": log_probs, "targets": concatenated, "input_lengths": input_lengths,
                "target_lengths": target_lengths}
    if family == "matrix":  # lengths as lists
        return {"log_probs": log_probs, "targets": padded, "input_lengths": input_lengths.tolist(),
                "target_lengths": target_lengths.tolist()}
    if family == "kdim":
        return {"log_probs": log_probs, "targets": padded.astype(np.int32),
                "input_lengths": input_lengths.astype(np.int32), "target_lengths": target_lengths.astype(np.int32)}
    return {"log_probs": log_probs, "targets": padded, "input_lengths": input_lengths, "target_lengths": target_lengths}


def soft_dtw_args(family: str, dtype: Any, rng: np.random.Generator) -> dict[str, Any]:
    samples = {"scalar": 1, "vector": 1, "matrix": 3, "kdim": 2, "empty": 0, "empty2d": 2,
               "transposed": 3, "strided": 3, "big": 128}[family]
    steps, other, features = {"kdim": (4, 9, 1), "big": (48, 32, 3)}.get(family, (7, 5, 3))
    x = rng.standard_normal((samples, steps, features)).astype(dtype)
    y = rng.standard_normal((samples, other, features)).astype(dtype)
    if family == "empty2d":
        y = y[:, :0]
    if family == "transposed":
        x = np.ascontiguousarray(x.transpose(2, 1, 0)).transpose(2, 1, 0)
    if family == "strided":
        y = np.repeat(y, 2, axis=2)[..., ::2]
    if family == "scalar":
        x, y = x[0], y[0]
    return {"x": x, "y": y}


SAMPLERS: dict[str, Callable[..., dict[str, Any]]] = {"ctc_loss": ctc_args, "soft_dtw": soft_dtw_args}


def make_recurrence_args(spec: lang.Loss, options: dict[str, Any], family: str, dtype: Any,
                         rng: np.random.Generator, reduction: str | None) -> dict[str, Any]:
    if spec.name not in SAMPLERS:
        pytest.skip(f"tests/recurrence_samples.py has no sampler for the recurrence loss {spec.name}")
    if family.startswith("bcast"):
        pytest.skip(f"the shape family {family!r} does not apply to a recurrence loss (no broadcasting)")
    if spec.name == "ctc_loss":
        args = ctc_args(family, dtype, rng, int(options.get("blank", 0)))
    else:
        args = SAMPLERS[spec.name](family, dtype, rng)
    for p in spec.params:
        if isinstance(p, lang.Reduction) and reduction is not None:
            args[p.name] = reduction
        elif p.name in options and p.name not in args:
            args[p.name] = options[p.name]
    return args
