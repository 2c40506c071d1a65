"""The LaTeX documentation rendered from the specs compiles to a PDF, and every loss has its page."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk is not installed (CI installs texlive and checks this)")
def test_docs_compile_to_pdf(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    result = subprocess.run(
        ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "losscc.tex"],
        cwd=docs, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert (docs / "losscc.pdf").stat().st_size > 10_000


def test_every_loss_has_a_page_in_the_master_document():
    master = (ROOT / "docs" / "losscc.tex").read_text()
    specs = sorted(p.stem for p in (ROOT / "specs").glob("*.py") if not p.name.startswith("_"))
    assert specs, "no specs found"
    for name in specs:
        assert f"\\input{{losses/{name}}}" in master, name
        page = (ROOT / "docs" / "losses" / f"{name}.tex").read_text()
        assert "\\frac{\\partial \\ell}" in page, f"{name}: no derived gradient on its page"
