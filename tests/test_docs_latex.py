"""The LaTeX documentation rendered from the specs compiles to a PDF, and every loss has its page."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LATEXMK = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "losscc.tex"]
# A display line may overfill the text width by this much before the docs count as broken
# (compiler/docs.py breaks long formulas by an estimate of their width, not TeX's measure).
OVERFULL_TOLERANCE_PT = 30.0

needs_latexmk = pytest.mark.skipif(
    shutil.which("latexmk") is None,
    reason="latexmk is not installed (apt-get install texlive-latex-base texlive-latex-recommended latexmk)",
)


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/ copied to a temporary directory and compiled there with latexmk."""
    docs = tmp_path_factory.mktemp("latex") / "docs"
    shutil.copytree(ROOT / "docs", docs)
    result = subprocess.run(LATEXMK, cwd=docs, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return docs


@needs_latexmk
def test_docs_compile_to_pdf(built_docs: Path) -> None:
    pdf = built_docs / "losscc.pdf"
    assert pdf.exists(), "latexmk succeeded but wrote no losscc.pdf"
    assert pdf.stat().st_size > 10_000


@needs_latexmk
def test_no_formula_runs_far_off_the_page(built_docs: Path) -> None:
    log = (built_docs / "losscc.log").read_text(errors="replace")
    overfull = [(float(width), where) for width, where in
                re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\) (.*)", log)]
    bad = [f"{width:.0f}pt {where}" for width, where in overfull if width > OVERFULL_TOLERANCE_PT]
    assert not bad, "lines run off the page (see compiler/docs.py, LINE_BUDGET):\n" + "\n".join(bad)


def test_every_loss_has_a_page_in_the_master_document() -> None:
    master = (ROOT / "docs" / "losscc.tex").read_text()
    specs = sorted(p.stem for p in (ROOT / "specs").glob("*.py") if not p.name.startswith("_"))
    assert specs, "no specs found"
    for name in specs:
        assert f"\\input{{losses/{name}}}" in master, name
        page = (ROOT / "docs" / "losses" / f"{name}.tex").read_text()
        assert "\\frac{\\partial \\ell}" in page, f"{name}: no derived gradient on its page"
