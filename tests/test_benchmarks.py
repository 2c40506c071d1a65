"""The benchmark command runs a tiny case end to end and writes well-formed JSON and a chart.
No timing is asserted: timings belong to an idle machine, not to the test-suite."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert {"losscc", "torch_eager", "triad", "roofline"} <= set(case["seconds"])
    assert set(case["ratios"]) == {"eager/losscc", "compile/losscc", "losscc/roofline", "out=/roofline"}
    assert case["agrees_with_torch"] is True
    assert chart.stat().st_size > 0
