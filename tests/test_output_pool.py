"""Large outputs reuse the memory of outputs the caller dropped (runtime OutputPool), and never
the memory of one still reachable: a held gradient, a view of it, a tensor made from it."""
from __future__ import annotations

import threading
import weakref

import numpy as np
import pytest

import generated
from generated import _runtime as rt

N = 1 << 19  # float32: 2 MiB per gradient, above OutputPool.MIN_BYTES


def mse_gradients(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mse_loss's gradients with reduction='sum', worked out by hand for the check."""
    return 2 * (x - y), -2 * (x - y)


def call(x: np.ndarray, y: np.ndarray):
    return generated.mse_loss_value_and_grad(x, y, reduction="sum")


@pytest.fixture(autouse=True)
def pool_in_use(monkeypatch):
    """The pool as in a process started without GLIBC_TUNABLES (the suite may run with them)."""
    monkeypatch.setattr(rt.OUTPUTS, "needed", True)
    rt.OUTPUTS.release()


@pytest.fixture
def inputs(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal(N).astype(np.float32) for _ in range(4)]


def test_dropped_outputs_are_reused(inputs):
    x, y, x2, y2 = inputs
    _, grads = call(x, y)
    blocks = [weakref.ref(g.base) for g in grads]  # the pool's uint8 arrays the gradients view
    del grads
    _, grads = call(x2, y2)
    assert {id(g.base) for g in grads} == {id(block()) for block in blocks}
    for got, expected in zip(grads, mse_gradients(x2, y2)):
        np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("keep", ["array", "view", "memoryview"])
def test_reachable_outputs_are_never_reused(inputs, keep):
    x, y, x2, y2 = inputs
    _, grads = call(x, y)
    kept = {"array": lambda g: g, "view": lambda g: g[1::3], "memoryview": memoryview}[keep](grads[0])
    before = np.array(kept, copy=True)
    del grads
    for _ in range(3):
        _, new = call(x2, y2)
        assert not np.shares_memory(new[0], np.asarray(kept))
        assert not np.shares_memory(new[1], np.asarray(kept))
    np.testing.assert_array_equal(np.asarray(kept), before)


def test_calls_from_two_threads_get_their_own_outputs(inputs):
    pairs = [(inputs[0], inputs[1]), (inputs[2], inputs[3])]
    wrong: list[str] = []

    def work(x: np.ndarray, y: np.ndarray) -> None:
        expected = mse_gradients(x, y)
        for _ in range(30):
            _, grads = call(x, y)
            if not all(np.allclose(g, e, rtol=1e-6) for g, e in zip(grads, expected)):
                wrong.append("a call's gradients are another call's")

    threads = [threading.Thread(target=work, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong


def test_pool_keeps_at_most_its_limit_and_release_empties_it(inputs, monkeypatch):
    x, y, _, _ = inputs
    generated.release_memory()
    monkeypatch.setattr(rt.OUTPUTS, "MAX_BYTES", 3 * x.nbytes)
    for rows in range(1, 6):  # a new size each time: no block fits, each call adds two
        call(x[: N - rows], y[: N - rows])
    _, grads = call(x[: N - 6], y[: N - 6])
    assert sum(block.nbytes for block in rt.OUTPUTS.blocks) <= 3 * x.nbytes
    kept = np.array(grads[0], copy=True)
    generated.release_memory()
    assert rt.OUTPUTS.blocks == []
    np.testing.assert_array_equal(grads[0], kept)  # arrays in use stay valid


def test_outputs_held_past_the_limit_are_not_kept_once_dropped(inputs, monkeypatch):
    x, y, _, _ = inputs
    generated.release_memory()
    monkeypatch.setattr(rt.OUTPUTS, "MAX_BYTES", 5 * x.nbytes)
    held = [call(x[: N - rows], y[: N - rows])[1] for rows in range(1, 6)]  # ten blocks in use
    for grads, rows in zip(held, range(1, 6)):
        for got, expected in zip(grads, mse_gradients(x[: N - rows], y[: N - rows])):
            np.testing.assert_allclose(got, expected, rtol=1e-6)
    del held
    assert sum(block.nbytes for block in rt.OUTPUTS.blocks) <= 5 * x.nbytes


@pytest.mark.parametrize("tunables, keeps", [
    ("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000", True),  # the benchmark's
    ("glibc.malloc.trim_threshold=4000000000:glibc.malloc.mmap_max=0", True),
    ("glibc.malloc.mmap_max=0", False),  # trims: freed memory goes back, and faults in again
    ("glibc.malloc.trim_threshold=4000000000", False),  # large blocks still mapped, unmapped
    ("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1048576", False),  # trims above 1 MiB
    ("glibc.malloc.mmap_max=zero:glibc.malloc.trim_threshold=4000000000", False),
    ("", False),
])
def test_malloc_keeps_memory_reads_the_tunables(tunables, keeps):
    assert rt.malloc_keeps_memory(tunables, rt.OutputPool.MAX_BYTES) is keeps


def test_without_need_outputs_come_from_malloc(inputs, monkeypatch):
    """Where malloc neither maps nor trims, outputs are fresh arrays: the pool holds nothing,
    and two live calls' outputs never share memory."""
    monkeypatch.setattr(rt.OUTPUTS, "needed", False)
    x, y, x2, y2 = inputs
    first = call(x, y)[1]
    second = call(x2, y2)[1]
    assert rt.OUTPUTS.blocks == []
    assert not any(np.shares_memory(a, b) for a in first for b in second)
    for got, expected in zip(second, mse_gradients(x2, y2)):
        np.testing.assert_allclose(got, expected, rtol=1e-6)
