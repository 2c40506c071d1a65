"""Stage 5, render: the IR through Jinja templates into files (path -> text)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import jinja2

from .lower import INDEX_LIST, ElementwiseIR, RowIR, SignatureParam
from .pair import ChainIR
from .primitives import PRIMITIVES
from .recurrence import RecurrenceIR
from .series import atanh_coefficients, exp_coefficients

TEMPLATES = Path(__file__).parent / "templates"
# Chunks of at least this many elements; at most MAX_CHUNKS of them (about 4 per thread on
# machines up to 16 threads). See numba-performance notes: a few chunks per thread, not one.
CHUNK_ELEMENTS = 16384
MAX_CHUNKS = 64


def _param(p: SignatureParam) -> str:
    return p.name if not p.default else f"{p.name}={p.default}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["add_suffix"] = lambda name, suffix: f"{name}{suffix}"
    env.filters["pyrepr"] = repr
    env.filters["pytuple"] = lambda items: repr(tuple(items))
    env.filters["param"] = _param
    env.filters["kwarg"] = lambda name: f"{name}={name}"
    env.filters["pydict"] = lambda items: repr(dict(items))
    env.filters["lane_name"] = lambda lane: f"_lane{lane}"
    env.globals["zip"] = zip
    env.globals["INDEX_LIST"] = INDEX_LIST  # a row scratch array of class indices (lower.Stmt.listed)
    return env


def _latex_environment() -> jinja2.Environment:
    """LaTeX templates use \\VAR{...} and \\BLOCK{...}: braces and % belong to TeX."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        block_start_string=r"\BLOCK{",
        block_end_string="}",
        variable_start_string=r"\VAR{",
        variable_end_string="}",
        comment_start_string=r"\#{",
        comment_end_string="}",
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def render_package(modules: Iterable[ElementwiseIR | RowIR | RecurrenceIR | ChainIR]) -> dict[str, str]:
    """Files of the generated package, keyed by their path relative to the package."""
    env = _environment()
    modules = list(modules)
    files = {
        "_runtime.py": env.get_template("_runtime.py.j2").render(
            helpers=sorted((p.NUMBA for p in PRIMITIVES), key=lambda h: h.name),
            chunk_elements=CHUNK_ELEMENTS,
            max_chunks=MAX_CHUNKS,
            atanh=atanh_coefficients(),
            exp_q=exp_coefficients(),
        ),
        "__init__.py": env.get_template("__init__.py.j2").render(modules=sorted(modules, key=lambda m: m.name)),
    }
    if any(isinstance(m, RecurrenceIR) for m in modules):
        files["_recurrence.py"] = env.get_template("_recurrence.py.j2").render()
    if any(isinstance(m, ChainIR) or isinstance(m, RowIR) and m.driver.startswith("_pair.") for m in modules):
        files["_pair.py"] = env.get_template("_pair.py.j2").render()
    for module in modules:
        if isinstance(module, ChainIR):  # the public driver, and the loss of the distances it runs
            files[f"{module.name}.py"] = env.get_template("chain.py.j2").render(ir=module)
            files[f"{module.inner.name}.py"] = env.get_template("elementwise.py.j2").render(ir=module.inner)
            continue
        template = "row.py.j2" if isinstance(module, RowIR) else "elementwise.py.j2"
        template = "recurrence.py.j2" if isinstance(module, RecurrenceIR) else template
        files[f"{module.name}.py"] = env.get_template(template).render(ir=module)
    return _stamp_runtime(files)


def _stamp_runtime(files: dict[str, str]) -> dict[str, str]:
    """Name the runtime's digest in the second line of every kernel module. Numba's cache is keyed
    by the kernel's own file, while kernels inline the runtime's helpers and flags: a changed
    runtime must change every kernel file, or a stale cached kernel would keep running."""
    digest = hashlib.sha256(files["_runtime.py"].encode()).hexdigest()[:16]
    stamped = {}
    for name, text in files.items():
        if name not in ("_runtime.py", "__init__.py"):
            first, _, rest = text.partition("\n")
            text = f"{first}\n# Compiled against _runtime.py {digest}.\n{rest}"
        stamped[name] = text
    return stamped


def render_docs(pages: Iterable[object], package: str) -> dict[str, str]:
    env = _latex_environment()
    pages = sorted(pages, key=lambda p: p.name)  # type: ignore[attr-defined]
    files = {f"losses/{page.name}.tex": env.get_template("loss.tex.j2").render(page=page) for page in pages}  # type: ignore[attr-defined]
    files["losscc.tex"] = env.get_template("losscc.tex.j2").render(pages=pages, package=package)
    return files
