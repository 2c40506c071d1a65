"""The compiler itself: the printer's exact output, spec validation errors through the real
command line (naming the spec file and the field, leaving existing output untouched),
`build --check` on the committed tree, and byte-stable rebuilds."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sympy
import sympy.codegen.cfunctions

import support
from compiler.printer import SpecError, to_code

x, y = sympy.symbols("x y", real=True)


# ---------------------------------------------------------------------------------------------
# printer
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "expr,code",
    [
        (sympy.sign(x), "(1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0))"),
        (sympy.Piecewise((x**2 / 2, sympy.Abs(x) < 1), (sympy.Abs(x) - sympy.Rational(1, 2), True)),
         "((0.5)*(x*x) if (abs(x) < 1.0) else abs(x) - 0.5)"),
        (x**2, "(x*x)"),
        (x**-2, "(1.0/(x*x))"),
        (sympy.sqrt(x), "math.sqrt(x)"),
        (x**sympy.Rational(3, 2), "(x**1.5)"),
        (sympy.exp(x) + sympy.log(y), "rt.fast_exp(x) + rt.fast_log(y)"),
        (sympy.codegen.cfunctions.log1p(x), "rt.fast_log1p(x)"),
        (sympy.Max(x, 0), "(0.0 if 0.0 > x else x)"),
        (sympy.Min(x, y), "(x if x < y else y)"),
        (sympy.Abs(x), "abs(x)"),
        (sympy.pi * x, "3.141592653589793*x"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_printer_exact_strings(expr, code):
    assert to_code(expr) == code


def test_data_precision_printer_types_constants_and_subtracts_the_data_first():
    """float32_arithmetic: every constant and Real in the data's type F (a bare 0.5 would widen
    the expression to float64), exp, log and the primitives as their _in twins (which return
    the data's type), and differences of the data before anything else is added."""
    x, t, beta, tmp = sympy.symbols("input target beta _t0", real=True)
    expr = sympy.Piecewise((x - t - beta / 2, x - t > beta), (sympy.sign(x) * tmp**-1, True))
    assert to_code(expr, "input_a", ("input", "target"), ("beta",)) == (
        "(input - target - F(0.5)*F(beta) if (F(beta) < input - target) else "
        "(F(1.0) if input > F(0.0) else (F(-1.0) if input < F(0.0) else F(0.0)))/_t0)"
    )
    assert to_code(sympy.exp(tmp) + 1, "input_a", ("input",)) == "rt.exp_in(_t0, input_a) + F(1.0)"
    # the upstream gradient multiplies first (scale*w*d, not scale*(w*d), which can overflow)
    w, scale = sympy.symbols("weight scale", real=True)
    assert to_code(-scale * w * tmp, "input_a", ("input", "weight"), ("scale",), ("scale",)) == "-F(scale)*_t0*weight"
    # without data, the float64 printer: plain literals and sympy's order
    assert to_code(x - t - beta / 2, "input_a") == "-0.5*beta + input - target"


def test_printer_primitives_call_the_runtime():
    from compiler.primitives import PRIMITIVES

    for primitive in PRIMITIVES:
        args = (x, y, x)[: primitive.nargs.args[0] if hasattr(primitive.nargs, "args") else primitive.nargs]
        if primitive.__name__ == "where":
            args = (x > 0, x, y)
        if primitive.__name__ == "indicator":
            args = (x > 0,)
        code = to_code(primitive(*args))
        if primitive.__name__ == "two_forms":  # printed as its value form, no call
            assert code == "(x)", code
            continue
        assert code.startswith(f"rt.{primitive.NUMBA.name}("), code


def test_printer_rejects_piecewise_without_true_branch():
    with pytest.raises(SpecError, match="True"):
        to_code(sympy.Piecewise((x, x < 0)))


def test_printer_rejects_unknown_functions():
    with pytest.raises(SpecError, match="no Numba translation"):
        to_code(sympy.Function("mystery")(x))


def test_printed_code_evaluates_like_sympy():
    """The printed source, evaluated with Python's math, equals sympy's own evaluation."""
    import math

    from generated import _runtime as rt

    expr = sympy.Piecewise((x**2 / 2, sympy.Abs(x - y) < 1), (sympy.Abs(x) - sympy.Rational(1, 2), True)) \
        + sympy.exp(-x) * sympy.log(1 + y**2) + sympy.sign(x - y)
    code = to_code(expr)
    for xv, yv in [(0.3, -0.2), (-2.0, 1.5), (1.0, 1.0)]:
        value = eval(code, {"math": math, "abs": abs, "rt": rt}, {"x": xv, "y": yv})  # noqa: S307
        assert value == pytest.approx(float(expr.subs({x: xv, y: yv})), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# the command line on malformed specs
# ---------------------------------------------------------------------------------------------

HEADER = "from compiler.lang import Loss, Piecewise, Real, Reduction, Tensor, log, exp\nimport sympy\n\n"
GOOD = HEADER + textwrap.dedent(
    """
    def element(input, target):
        return (input - target) ** 2


    SPEC = Loss(
        name="{name}",
        summary="A squared error used by the tests.",
        params=(Tensor("input", differentiable=True), Tensor("target", differentiable=True), Reduction("mean")),
        element=element,
    )
    """
)


def _spec(body_element: str, name: str = "bad_loss", params: str | None = None) -> str:
    params = params or 'Tensor("input", differentiable=True), Tensor("target", differentiable=True), Reduction("mean")'
    return HEADER + textwrap.dedent(body_element) + textwrap.dedent(
        f"""

        SPEC = Loss(
            name="{name}",
            summary="A malformed spec.",
            params=({params}),
            element=element,
        )
        """
    )


MALFORMED = {
    "missing_SPEC": ("bad_loss", HEADER + "def element(input, target):\n    return input - target\n", "SPEC"),
    "wrong_name": ("bad_loss", _spec("def element(input, target):\n    return input - target\n", name="other_loss"), "name"),
    "element_parameters": ("bad_loss", _spec("def element(input, tgt):\n    return input - tgt\n"), "element"),
    "undefined_symbol": ("bad_loss", _spec("def element(input, target):\n    return input - sympy.Symbol('z')\n"), "element"),
    "piecewise_without_true": (
        "bad_loss",
        _spec("def element(input, target):\n    return Piecewise((input - target, input > target))\n"),
        "element",
    ),
    "unknown_function": (
        "bad_loss",
        _spec("def element(input, target):\n    return sympy.Function('mystery')(input - target)\n"),
        "element",
    ),
    "not_a_parameter": (
        "bad_loss",
        _spec("def element(input, target):\n    return input - target\n",
              params='Tensor("input", differentiable=True), "target", Reduction("mean")'),
        "params[1]",
    ),
    "no_reduction": (
        "bad_loss",
        _spec("def element(input, target):\n    return input - target\n",
              params='Tensor("input", differentiable=True), Tensor("target", differentiable=True)'),
        "params",
    ),
    "import_error": ("bad_loss", "import no_such_module_anywhere\n", "import"),
    "name_the_kernels_use": (
        "bad_loss",
        _spec("def element(input, target, scale):\n    return scale * (input - target)\n",
              params='Tensor("input", differentiable=True), Tensor("target", differentiable=True), Real("scale", 1.0), '
                     'Reduction("mean")'),
        "params[2]",
    ),
}


def run_cli(*args: str, cwd: Path = support.ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compiler", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def snapshot(*roots: Path) -> dict[str, bytes]:
    result = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                result[str(path)] = path.read_bytes()
    return result


@pytest.fixture(scope="module")
def good_build(tmp_path_factory):
    """A spec directory with one good spec, built once: output to compare against."""
    root = tmp_path_factory.mktemp("good")
    specs = root / "specs"
    specs.mkdir()
    (specs / "square_loss.py").write_text(GOOD.format(name="square_loss"))
    result = run_cli("build", "--specs", "specs", "--out", "pkg", "--docs", "docs", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_spec_fails_and_writes_nothing(case, good_build, tmp_path):
    filename, source, field = MALFORMED[case]
    specs = tmp_path / "specs"
    shutil.copytree(good_build / "specs", specs)
    shutil.copytree(good_build / "pkg", tmp_path / "pkg")
    shutil.copytree(good_build / "docs", tmp_path / "docs")
    bad = specs / f"{filename}.py"
    bad.write_text(source)
    before = snapshot(tmp_path / "pkg", tmp_path / "docs")
    result = run_cli("build", "--specs", "specs", "--out", "pkg", "--docs", "docs", cwd=tmp_path)
    assert result.returncode != 0, f"{case}: build succeeded:\n{result.stdout}"
    message = result.stderr
    assert f"specs/{filename}.py" in message, f"{case}: the error does not name specs/{filename}.py: {message!r}"
    assert field in message, f"{case}: the error does not name the field {field!r}: {message!r}"
    assert "Traceback" not in message, f"{case}: a traceback instead of an error message:\n{message}"
    assert snapshot(tmp_path / "pkg", tmp_path / "docs") == before, f"{case}: the failed build changed the output"


def test_malformed_spec_into_fresh_directory_creates_nothing(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    _, source, _ = MALFORMED["undefined_symbol"]
    (specs / "bad_loss.py").write_text(source)
    result = run_cli("build", "--specs", str(specs), "--out", str(tmp_path / "pkg"), "--docs", str(tmp_path / "docs"))
    assert result.returncode != 0
    assert not (tmp_path / "pkg").exists() and not (tmp_path / "docs").exists()


def test_missing_spec_directory(tmp_path):
    result = run_cli("build", "--specs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "pkg"),
                     "--docs", str(tmp_path / "docs"))
    assert result.returncode != 0
    assert "nowhere" in result.stderr


def test_duplicate_spec_names(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "square_loss.py").write_text(GOOD.format(name="square_loss"))
    (specs / "copy_loss.py").write_text(GOOD.format(name="square_loss"))
    result = run_cli("build", "--specs", str(specs), "--out", str(tmp_path / "pkg"), "--docs", str(tmp_path / "docs"))
    assert result.returncode != 0
    assert "copy_loss.py" in result.stderr or "more than one" in result.stderr


# ---------------------------------------------------------------------------------------------
# the committed tree and rebuilds
# ---------------------------------------------------------------------------------------------

def test_committed_tree_is_up_to_date():
    """generated/ and docs/ are exactly what the specs compile to."""
    result = run_cli("build", "--check")
    assert result.returncode == 0, f"build --check failed:\n{result.stdout}\n{result.stderr}"


def test_check_detects_a_stale_file(good_build, tmp_path):
    shutil.copytree(good_build, tmp_path / "tree")
    root = tmp_path / "tree"
    args = ["--specs", "specs", "--out", "pkg", "--docs", "docs"]
    assert run_cli("build", "--check", *args, cwd=root).returncode == 0
    target = root / "pkg" / "square_loss.py"
    target.write_text(target.read_text() + "# edited by hand\n")
    result = run_cli("build", "--check", *args, cwd=root)
    assert result.returncode != 0
    assert "square_loss.py" in result.stdout + result.stderr


def test_building_twice_changes_nothing(tmp_path):
    """Build the real specs twice into a temporary tree: byte-identical, and the second build
    writes no file. The result also equals the committed generated/ and docs/."""
    args = ["--specs", "specs", "--out", str(tmp_path / "generated"), "--docs", str(tmp_path / "docs")]
    first = run_cli("build", *args)
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path)
    second = run_cli("build", *args)
    assert second.returncode == 0, second.stderr
    assert "wrote" not in second.stdout, second.stdout
    assert snapshot(tmp_path) == before
    for path, content in before.items():
        relative = Path(path).relative_to(tmp_path)
        committed = support.ROOT / relative
        assert committed.exists(), f"{relative} is built but not in the tree"
        assert committed.read_bytes() == content, f"{relative} differs from the committed file"


def test_list_command():
    """`losscc list` names every loss with the parameters of its generated function, in order."""
    import inspect
    import re

    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    listed = dict(re.findall(r"^(\w+)\((.*)\)$", result.stdout, re.M))
    for loaded in support.LOSSES:
        names = [part.split("=")[0].split(" ")[0] for part in listed[loaded.name].split(", ")]
        signature = inspect.signature(support.ours(loaded.spec)).parameters
        assert names == [n for n, p in signature.items() if p.kind != p.VAR_KEYWORD], loaded.name


def test_reserved_names_cover_every_kernel_local():
    """Every argument and local of every generated kernel is private (a leading underscore),
    derived from a parameter of its spec (input_a, input_g, ...), or reserved: a spec parameter
    can never clash with the template's own names."""
    import ast
    import re

    from compiler.load import is_reserved

    for loaded in support.LOSSES:
        names = [p.name for p in loaded.spec.params]
        names += [f"distance_{a}_{b}" for a in names for b in names]  # a chain loss's distances
        # input_a, input_r, and a second row's input_r_b (row kernels run small rows in pairs)
        derived = re.compile("(" + "|".join(map(re.escape, names)) + r")(_[a-z]+){0,2}")
        files = [support.ROOT / "generated" / f"{prefix}{loaded.name}{suffix}.py" for prefix, suffix in (("", ""), ("_", "_distances"))]
        for path in [f for f in files if f.exists()]:
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.FunctionDef) and any("njit" in ast.unparse(d) for d in node.decorator_list)):
                    continue
                local = {a.arg for a in node.args.args}
                local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                clashing = sorted(n for n in local if not n.startswith("_") and not derived.fullmatch(n)
                                  and not is_reserved(re.sub(r"_[a-z]+$", "", n)) and not is_reserved(n))
                assert not clashing, f"{path.name}:{node.name} uses {clashing}: add them to compiler.load.RESERVED_NAMES"


# ---------------------------------------------------------------------------------------------
# row lowering: sums that skip the classes where their term is zero
# ---------------------------------------------------------------------------------------------

def test_nonzero_indices_lists_every_nonzero_class_in_order():
    from generated import _runtime as rt

    row = np.array([0.0, 2.0, -0.0, np.nan, 0.0, -1.0, 1e-300])
    out = np.full(row.size, -7, dtype=np.int64)
    count = rt.nonzero_indices(row, out)
    expected = np.flatnonzero(row != 0.0)  # nan != 0: listed
    assert count == expected.size
    np.testing.assert_array_equal(out[:count], expected)
    assert rt.nonzero_indices(row[:0], out) == 0


def test_label_sums_run_over_the_listed_labels_only():
    """multilabel_margin sums over target labels j and other classes i; with the label
    counts' zero guard each sum over j visits the row's labels only, and the hinge sum over i
    that the gradient needs per label runs only at classes k that are labels: O(labels x C) per
    row instead of O(C^2) (4096 x 1000 float32, 4 labels a row: 6.1 s -> 0.10 s)."""
    from compiler.lower import lower_row

    (loaded,) = [s for s in support.LOSSES if s.name == "multilabel_margin_loss"]
    for variant in lower_row(loaded).variants:
        for body in (variant.forward, variant.fused):
            def walk(stmts):
                for stmt in stmts:
                    yield stmt
                    yield from walk(stmt.body)

            sums = [s for s in walk(body.row + body.per_class) if s.kind == "sum"]
            over_labels = [s for s in sums if s.listed == "_nz_target_count"]
            assert over_labels and all(s.listed_count == "_nnz_target_count" for s in over_labels)
            assert ("_nz_target_count", "int64") in body.caches
            assert body.row[0].code == "rt.nonzero_indices(target_count_r, _nz_target_count)"
            full = [s for s in sums if not s.listed]
            if body is variant.fused:
                assert [s.guard for s in full if s in body.per_class] == ["target_count_r[k] != 0.0"]
            # a sum over all C classes only ever sits inside one over the labels or under a guard
            assert all(s.guard or any(s in o.body for o in over_labels) for s in full)


def test_a_one_hot_gradient_zeroes_its_row_and_writes_one_entry():
    """nll_loss's gradient is KroneckerDelta(k, target) * value: its fused kernels zero each
    row and write the target's entry (torch's zeros + scatter), instead of a float64 select
    per class (4096 x 1000 float32, warm: 0.29-0.38 -> 0.14-0.16 ms a kernel call). The
    dense gradients of cross_entropy keep their per-class loop."""
    from compiler.lower import lower_row

    by_name = {s.name: s for s in support.LOSSES}
    for variant in lower_row(by_name["nll_loss"]).variants:
        assert variant.fused.sparse_index == "target" and variant.fused_b.sparse_index == "target_b"
        assert not variant.fused.per_class and not variant.forward.sparse_index
    assert not any(v.fused.sparse_index for v in lower_row(by_name["cross_entropy"]).variants)


@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 2), (3, 2000)], ids=["rows", "strided", "wide"])
def test_a_one_hot_gradient_is_zero_off_target_for_any_grad_output(shape):
    """Zeroed, not multiplied by zero: torch's nll_loss gradient is +0.0 off the target even
    where grad_output is inf, nan or negative (s * 0.0 would give nan or -0.0 there)."""
    import torch

    import generated

    x = np.random.default_rng(0).standard_normal(shape)
    target = np.array([[1, 0], [0, 3], [3, 2]])[:, :len(shape) - 1].reshape((3,) + shape[2:])
    grad_output = np.array([[np.inf, -2.0], [-np.inf, np.nan], [np.nan, 0.5]])[:, :len(shape) - 1].reshape(target.shape)
    ours = generated.nll_loss_backward(grad_output, x, target, reduction="none")[0]
    tx = torch.from_numpy(x).requires_grad_(True)
    value = torch.nn.functional.nll_loss(tx, torch.from_numpy(target), reduction="none")
    theirs = torch.autograd.grad(value, tx, torch.from_numpy(grad_output))[0].numpy()
    np.testing.assert_array_equal(ours, theirs)
    numbers = ~np.isnan(theirs)  # a nan's sign carries nothing
    assert np.array_equal(np.signbit(ours[numbers]), np.signbit(theirs[numbers]))


def test_specialize_zero_folds_the_branch_for_zero_out_of_the_nonzero_kernel():
    """smooth_l1's element starts Piecewise((|d|, Eq(beta, 0)), ...). With specialize_zero its
    kernel for nonzero beta never tests beta == 0 per element (that select chain kept the fused
    loop at half speed: 1e6 float32, 1 thread, 0.61 -> 0.31 ms), and its kernel for 0 is l1's."""
    from compiler.lower import lower

    (loaded,) = [s for s in support.LOSSES if s.name == "smooth_l1_loss"]
    kernels = {v.key: v for v in lower(loaded).variants}
    assert set(kernels) == {"plain", "beta"}

    def code(variant):
        body = variant.fused
        return "\n".join([c for _, c in body.temporaries] + [body.loss] + [c for _, c in body.gradients])

    assert "F(beta)" in code(kernels["beta"]) and "== F(0.0)" not in code(kernels["beta"])
    assert "beta" not in code(kernels["plain"]) and "abs(" in code(kernels["plain"])


def test_stage_exponentials_gives_each_argument_one_exponential_and_its_temporaries():
    """sigmoid(z) and softplus(z) of one z share one staged exp(-|z|); the staged loop gets the
    temporaries z needs (transitively), not the others; calls whose argument holds a staged
    call stay whole."""
    from compiler import primitives as P
    from compiler.lower import stage_exponentials
    from compiler.optimize import Shared

    t0, t1, t2, w = sympy.symbols("_t0 _t1 _t2 w", real=True)
    shared = Shared(((t0, x * y), (t1, -t0), (t2, w * 3)),
                    (P.softplus(t1) + t2 * P.sigmoid(t1), P.sigmoid(x) * P.softplus(P.sigmoid(y))))
    staged, exponentials, rewritten = stage_exponentials(shared)
    assert staged == ((t0, x * y), (t1, -t0))
    e = {z: symbol for symbol, z in exponentials}
    assert set(e) == {t1, x, y} and len(set(e.values())) == 3
    assert rewritten.outputs == (P.softplus_of(t1, e[t1]) + t2 * P.sigmoid_of(t1, e[t1]),
                                 P.sigmoid_of(x, e[x]) * P.softplus(P.sigmoid_of(y, e[y])))
    assert rewritten.temporaries == shared.temporaries


def test_kernels_with_sigmoid_and_softplus_stage_their_exponential():
    """bce_with_logits' fused kernel computes exp(-|x|) once per element in a loop of its own,
    in the data's type, and calls the staged forms only."""
    source = (support.ROOT / "generated" / "binary_cross_entropy_with_logits.py").read_text()
    fused = source[source.index("def _fused_plain"):source.index("def _forward_pos_weight")]
    assert "_e0_s = np.empty(rt.STAGE_BLOCK, input_a.dtype)" in fused
    assert "_e0_s[i] = rt.exp_in(-abs(_t0), input_a)" in fused and "_t0 = -input" in fused
    assert "rt.sigmoid_of(_t0, _e0)" in fused and "rt.softplus_of_as(_t0, _e0, input_a)" in fused
    assert "rt.sigmoid_as(" not in fused and "rt.softplus_as(" not in fused


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outside_counts_counts_each_array_in_one_parallel_pass(dtype):
    """rt.outside_counts: per array, the elements outside [lo, hi] (nan is outside, -0.0 and the
    bounds are inside), over many chunks, with bounds exact in float32 (compared in float32)
    or not (0.1: compared in float64, so 0.1f, above 0.1, is inside)."""
    from generated import _runtime as rt

    rng = np.random.default_rng(5)
    n = 5 * rt.CHUNK_ELEMENTS + 7  # several chunks, a ragged last one
    first = rng.uniform(0, 1, n).astype(dtype)
    second = rng.uniform(0, 1, n).astype(dtype)
    first[[0, rt.CHUNK_ELEMENTS - 1, n - 1]] = [1.5, np.nan, -1e-30]
    second[[1, 2 * rt.CHUNK_ELEMENTS]] = [-0.0, 1.0]
    for lo, hi in [(0.0, 1.0), (0.1, 0.9), (-np.inf, np.inf), (0.0, np.inf)]:
        expected = [int(np.count_nonzero(~((a.astype(np.float64) >= lo) & (a.astype(np.float64) <= hi))))
                    for a in (first, second)]
        assert rt.outside_counts((first, second), lo, hi) == expected, (lo, hi)
        assert rt.outside_counts((second,), lo, hi) == expected[1:]
        assert rt.all_within(first, lo, hi) == (expected[0] == 0)
    assert rt.outside_counts((first[:0], second[:3]), 0.0, 1.0) == [0, 0]


def test_no_kernel_sums_the_same_term_twice_over_a_row():
    """lower_sums gives each distinct sum of a statement list one loop: the same sum written with
    another index, or met again inside another sum (a norm inside cosine's dot product), reads
    the first loop's result. cosine_similarity's gradient kernel had 11 loops over each row where
    5 do (float32 (65536, 128): 11.4 -> 5.6 ms)."""
    import collections
    import re

    generated_dir = Path(__file__).resolve().parent.parent / "generated"
    loop = re.compile(r"\n( +)(_s\d+\w*) = 0\.0\n +for (c\d+) in range\((\w+)\):\n +\2 \+= (.+)")
    repeated = []
    kernels = 0
    for path in sorted(generated_dir.glob("*.py")):
        for function in re.split(r"\n(?=@numba\.njit)", path.read_text()):
            name = re.search(r"def (\w+)\(", function)
            sums = collections.Counter(
                (len(indent), bound, term.replace(index, "i")) for indent, _, index, bound, term in loop.findall(function))
            kernels += bool(sums)
            repeated += [(path.name, name.group(1) if name else "?", term) for term, count in sums.items() if count > 1]
    assert kernels >= 10, "the pattern no longer matches the kernels' sum loops"
    assert not repeated, repeated
