"""The benchmark command runs a tiny case end to end and writes well-formed JSON and a chart.
No timing is asserted: timings belong to an idle machine, not to the test-suite."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_benchmark_writes_json_and_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the chart needs matplotlib: pip install -e '.[bench]'")
    report, chart = tmp_path / "bench.json", tmp_path / "bench.png"
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "--losses", "mse_loss", "--sizes", "1e4", "--dtypes", "float32",
         "--rounds", "2", "--no-compile", "--no-startup", "--json", str(report), "--png", str(chart)],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )
    result = json.loads(report.read_text())
    assert result["bandwidth_gb_s"] > 0
    (case,) = result["cases"]
    assert (case["loss"], case["dtype"], case["size"]) == ("mse_loss", "float32", "1e4")
    assert case["bytes_moved"] == 4 * 4 * 10_000  # input, target read; two gradients written
    assert {"losscc", "losscc_out", "torch_eager", "triad", "roofline", "stream"} <= set(case["seconds"])
    assert set(case["ratios"]) == {"eager/losscc", "compile/losscc", "losscc/roofline", "out=/roofline",
                                   "out=/stream", "eager/stream"}
    assert case["agrees_with_torch"] is True
    assert chart.stat().st_size > 0
    assert result["targets"] == []  # 1e4: no target of issue 6 applies


@pytest.mark.parametrize("loss", ["triplet_margin_loss", "cosine_distance", "cosine_embedding_loss",
                                  "triplet_margin_with_distance_loss"])
def test_pair_losses_run_at_rows_by_features(tmp_path: Path, loss: str) -> None:
    """Pair losses take (N, D) sizes; distances (one value per row) get torch's grad_output of ones,
    and their values agree with torch's (cosine_distance is torch's 1 - cosine_similarity)."""
    report = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "--losses", loss, "--sizes", "1e4,64x8", "--dtypes", "float64",
         "--rounds", "2", "--no-compile", "--no-startup", "--json", str(report), "--png", str(tmp_path / "c.png")],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )
    (case,) = json.loads(report.read_text())["cases"]  # the elementwise size does not apply
    assert (case["loss"], case["size"], case["kind"]) == (loss, "64x8", "chain" if "distance_loss" in loss else "pair")
    assert case["agrees_with_torch"] is True
    assert case["seconds"]["losscc"] > 0 and case["seconds"]["torch_eager"] > 0


def test_recurrence_losses_run_on_their_spec_examples(tmp_path: Path) -> None:
    """ctc_loss's inputs come from its spec's example(): (T, N, C, S) sizes, agreeing with torch;
    soft_dtw has no torch counterpart and is reported as skipped."""
    report = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--losses", "ctc_loss,soft_dtw", "--sizes", "12x3x5x4,64x8",
         "--dtypes", "float32", "--rounds", "2", "--no-compile", "--no-startup", "--json", str(report),
         "--png", str(tmp_path / "c.png")],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=300,
    )
    data = json.loads(report.read_text())
    (case,) = data["cases"]
    assert (case["loss"], case["size"], case["kind"]) == ("ctc_loss", "12x3x5x4", "recurrence")
    assert case["agrees_with_torch"] is True
    assert "soft_dtw" in data["skipped_losses"], result.stdout


def test_stream_reads_every_input_and_writes_every_gradient() -> None:
    """The bare stream touches all of a case's arrays (an output left unwritten would make it look
    faster than moving the bytes), and declines cases it cannot stand for."""
    from benchmarks.suite import stream_contender

    a, b, c = (np.full(1000, value, dtype=np.float32) for value in (1.0, 2.0, 4.0))
    g, h = np.zeros(1000, np.float32), np.zeros(1000, np.float32)
    call = stream_contender([a, b, c], [g, h])
    assert callable(call)
    call()
    # it writes arrays of its own, shaped like the gradients: the closure's arrays holding a + b + c
    arrays = [cell.cell_contents for cell in call.__closure__ or () if isinstance(cell.cell_contents, np.ndarray)]
    assert len({id(x) for x in arrays if x.shape == g.shape and (x == 7.0).all()}) == 2
    assert isinstance(stream_contender([a, b.astype(np.float64)], [g]), str)
    assert isinstance(stream_contender([a, a, a, a], [g]), str)


def test_targets_judge_the_median_and_report_the_rounds_spread() -> None:
    """Each target of issue 6 applies to its cases only, is met or missed by the ratio of the
    medians, and reports the per-round paired ratios' quartiles and share on target."""
    from benchmarks.suite import Case, Result, target_verdicts, targets_summary

    def result(loss: str, kind: str, dtype: str, size: str, rounds: dict[str, list[float]]) -> Result:
        r = Result(Case(loss, dtype, size), kind=kind, rounds=rounds)
        r.seconds = {name: float(np.median(times)) for name, times in rounds.items()}
        return r

    # eager 3.3x losscc in 3 rounds of 5, 2.5x in the others: the median (3.3x) meets >= 3
    ok = result("mse_loss", "elementwise", "float64", "1e6",
                {"torch_eager": [3.3, 2.5, 3.3, 2.5, 3.3], "losscc": [1.0] * 5})
    # losscc with out= at 2x the roofline in every round: misses <= 1.5
    slow = result("binary_cross_entropy", "elementwise", "float32", "1e7",
                  {"losscc_out": [2.0] * 4, "roofline": [1.0] * 4})
    # nll_loss float64 and a 1e4 case: no target applies
    aside = [result("nll_loss", "row", "float64", "4096x1000", {"torch_eager": [1.0], "losscc": [1.0]}),
             result("mse_loss", "elementwise", "float32", "1e4", {"torch_eager": [1.0], "losscc": [1.0]})]
    nll = result("nll_loss", "row", "float32", "4096x1000", {"torch_eager": [1.9, 2.1, 1.8], "losscc": [1.0] * 3})
    verdicts = target_verdicts([ok, slow, nll, *aside])
    by_case = {(v["loss"], v["target"].split(":")[0]): v for v in verdicts}
    assert set(by_case) == {("mse_loss", "eager/losscc >= 3"), ("binary_cross_entropy", "out=/roofline <= 1.5"),
                            ("nll_loss", "eager/losscc >= 2")}
    mse = by_case["mse_loss", "eager/losscc >= 3"]
    assert mse["met"] and mse["ratio"] == 3.3 and mse["rounds_on_target"] == 0.6
    assert mse["round_quartiles"] == [2.5, 3.3]
    bce = by_case["binary_cross_entropy", "out=/roofline <= 1.5"]
    assert not bce["met"] and bce["rounds_on_target"] == 0.0
    assert not by_case["nll_loss", "eager/losscc >= 2"]["met"]
    summary = targets_summary(verdicts)
    assert "missed: binary_cross_entropy float32 1e7: 2.000 [2.00-2.00, 0% of rounds]" in summary
    assert "missed: nll_loss float32 4096x1000: 1.900" in summary
    assert "missed: mse_loss" not in summary
