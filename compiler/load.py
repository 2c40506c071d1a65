"""Stage 1, load: find the spec files, import them, and validate every field."""
from __future__ import annotations

import importlib.util
import inspect
import keyword
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .lang import (
    BatchSize,
    Bool,
    Distance,
    Auxiliary,
    ClassTarget,
    Int,
    TargetWeightSum,
    Count,
    Flag,
    Legacy,
    Loss,
    Option,
    OptionalTensor,
    Real,
    Reduction,
    SumOf,
    Tensor,
)
from .printer import SpecError


@dataclass(frozen=True)
class LoadedSpec:
    path: Path  # as given on the command line, relative where possible: it appears in headers
    spec: Loss

    @property
    def name(self) -> str:
        return self.spec.name


def load_specs(directory: Path) -> list[LoadedSpec]:
    """Every ``*.py`` under ``directory`` not starting with '_', sorted by loss name."""
    if not directory.is_dir():
        raise SpecError(f"{directory}: no such spec directory")
    loaded = [load_spec(path) for path in sorted(directory.glob("*.py")) if not path.name.startswith("_")]
    names = [s.name for s in loaded]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"{directory}: more than one spec defines {', '.join(duplicates)}")
    from .pair import check_fused  # pair.py imports this module

    check_fused(loaded)
    return sorted(loaded, key=lambda s: s.name)


def load_spec(path: Path) -> LoadedSpec:
    module_name = f"_losscc_spec_{path.stem}"
    importer = importlib.util.spec_from_file_location(module_name, path)
    if importer is None or importer.loader is None:
        raise SpecError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(importer)
    sys.modules[module_name] = module
    try:
        importer.loader.exec_module(module)
    except Exception as error:  # a spec that fails to import names itself
        raise SpecError(f"{path}: importing the spec failed: {type(error).__name__}: {error}") from error
    finally:
        sys.modules.pop(module_name, None)
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, Loss):
        raise SpecError(f"{path}: field 'SPEC': expected SPEC = Loss(...), found {type(spec).__name__}")
    validate(path, spec)
    return LoadedSpec(path, spec)


# Names the kernel templates use for their own arguments and locals (loop indices c0, c1, ...
# and recurrence states p0, p1, ...): a parameter of the same name would clash with them in the
# generated source. tests/test_codegen.py checks the list against every generated kernel.
RESERVED_NAMES = frozenset({
    "C", "D", "F", "N", "R", "S", "T", "W", "acc", "b0", "bm", "c", "chunk", "cur", "d", "em", "exact", "go",
    "go_a", "go_c", "go_k", "hi", "i", "ignore_index", "j", "k", "labels", "last", "lo", "loss", "loss_c", "loss_k",
    "loss_out", "m", "n", "nchunks", "nxt", "paired", "partials", "prev", "r", "rows", "s", "sc", "scale",
    "scale_a", "size", "states", "steps", "store", "t", "table", "tape", "tape_n", "use_array", "want_grad", "work",
    "zero_infinity",
})
# kernel arguments that carry the spec parameter of that name when there is one
_SHARED_WITH_KERNELS = {"ignore_index": Int, "zero_infinity": Flag}


def is_reserved(name: str) -> bool:
    return name in RESERVED_NAMES or re.fullmatch(r"[cp][0-9]+", name) is not None


def _fail(path: Path, field: str, message: str) -> SpecError:
    return SpecError(f"{path}: field '{field}': {message}")


def validate(path: Path, spec: Loss) -> None:
    if not spec.name.isidentifier() or keyword.iskeyword(spec.name) or spec.name.startswith("_"):
        raise _fail(path, "name", f"{spec.name!r} is not a public Python identifier")
    if spec.name != path.stem:
        raise _fail(path, "name", f"{spec.name!r} must equal the file name {path.stem!r}")
    if not spec.summary.strip():
        raise _fail(path, "summary", "must say in one sentence what the loss is")
    names: list[str] = []
    for index, param in enumerate(spec.params):
        if not isinstance(param, (Tensor, OptionalTensor, ClassTarget, Auxiliary, Int, Real, Flag, Legacy, Reduction, Option,
                                  Bool, Distance)):
            raise _fail(path, f"params[{index}]", f"{param!r} is not a parameter of the spec language")
        if not param.name.isidentifier() or keyword.iskeyword(param.name) or param.name.startswith("_"):
            raise _fail(path, f"params[{index}]", f"{param.name!r} is not a valid parameter name")
        shared = isinstance(param, _SHARED_WITH_KERNELS.get(param.name, ()))
        if is_reserved(param.name) and not shared and not isinstance(param, (Legacy, Reduction)):
            raise _fail(path, f"params[{index}]", f"{param.name!r} is a name the generated kernels use "
                                                  "for themselves: choose another (compiler.load.RESERVED_NAMES)")
        names.append(param.name)
    if len(set(names)) != len(names):
        raise _fail(path, "params", "parameter names repeat")
    reductions = [p for p in spec.params if isinstance(p, Reduction)]
    if len(reductions) != 1 and not (spec.kind == "pair" and not reductions):  # a pair function may have none
        raise _fail(path, "params", "exactly one Reduction() parameter is required")
    legacy = {p.name for p in spec.params if isinstance(p, Legacy)}
    if legacy not in (set(), {"size_average", "reduce"}):
        raise _fail(path, "params", "Legacy('size_average') and Legacy('reduce') come as a pair")
    tensors = [p for p in spec.params if isinstance(p, Tensor)]
    if not tensors:
        raise _fail(path, "params", "a loss needs at least one Tensor")
    optional = {p.name for p in spec.params if isinstance(p, OptionalTensor)}
    if isinstance(spec.mean, SumOf) and spec.mean.tensor not in optional:
        raise _fail(path, "mean", f"SumOf({spec.mean.tensor!r}) must name an OptionalTensor")
    if spec.kind != "recurrence" and not isinstance(spec.mean, (Count, SumOf, BatchSize, TargetWeightSum)):
        raise _fail(path, "mean", f"{spec.mean!r} is not Count(), SumOf(...) or BatchSize()")
    for key, rule in spec.extra_reductions:
        if key in ("none", "sum", "mean") or not isinstance(rule, (Count, SumOf, BatchSize)):
            raise _fail(path, "extra_reductions", f"{key!r}: {rule!r} is not a new reduction rule")
    if spec.result_dtype != "promote" and spec.result_dtype not in {t.name for t in tensors}:
        raise _fail(path, "result_dtype", f"{spec.result_dtype!r} is neither 'promote' nor a Tensor")
    if not callable(spec.element):
        raise _fail(path, "element", "must be a function returning a SymPy expression")
    if spec.float32_arithmetic and spec.kind != "elementwise":
        raise _fail(path, "float32_arithmetic", "only elementwise kernels compute in the data's precision")
    if spec.signature_only_prepare and not (spec.kind == "elementwise" or (spec.kind == "row" and spec.ignore_index)):
        raise _fail(path, "signature_only_prepare",
                    "only elementwise losses and row losses of class indices with an ignore_index reuse a call's outcome")
    validate_kind(path, spec)
    expected = [p.name for p in spec.params if isinstance(p, (Tensor, OptionalTensor, ClassTarget, Auxiliary, Real, Flag, Distance))]
    try:
        parameters = list(inspect.signature(spec.element).parameters)
    except (TypeError, ValueError) as error:
        raise _fail(path, "element", str(error)) from error
    if sorted(parameters) != sorted(expected) and spec.kind != "recurrence":  # a recurrence has no element
        raise _fail(path, "element", f"its parameters {parameters} must be exactly {expected}")
    if spec.prepare is not None:
        if not inspect.isfunction(spec.prepare) or spec.prepare.__name__ == "<lambda>":
            raise _fail(path, "prepare", "must be a function defined with def in the spec file")
        if list(inspect.signature(spec.prepare).parameters) != ["a"]:
            raise _fail(path, "prepare", "must take exactly one parameter named 'a'")


def validate_kind(path: Path, spec: Loss) -> None:
    """Parameters that only one kernel shape understands."""
    if spec.kind == "recurrence":
        from .recurrence import validate as validate_recurrence  # the recurrence shape checks its own fields

        validate_recurrence(str(path), spec)
        return
    if spec.kind in ("pair", "chain"):
        from .pair import validate as validate_pair  # the pair and chain shapes check their own fields

        validate_pair(str(path), spec)
        return
    if any(isinstance(p, (Bool, Distance)) or isinstance(p, Real) and p.specialize for p in spec.params):
        raise _fail(path, "params", "Bool, Distance and Real(specialize=...) need kind='pair' or 'chain'")
    layouts = [p for p in spec.params if isinstance(p, (Tensor, OptionalTensor)) and p.layout != "elements"]
    targets = [p for p in spec.params if isinstance(p, ClassTarget)]
    if spec.kind == "elementwise":
        if layouts or targets or spec.ignore_index or any(isinstance(p, (Int, Auxiliary)) for p in spec.params):
            raise _fail(path, "kind", "class layouts, ClassTarget, Int and ignore_index need kind='row'")
        return
    first = spec.params[0]
    if not (isinstance(first, Tensor) and first.name == "input" and first.layout == "rows"):
        raise _fail(path, "params", "a row loss starts with Tensor('input', ..., layout='rows')")
    if any(isinstance(p, (Tensor, OptionalTensor)) and p.layout == "elements" for p in spec.params):
        raise _fail(path, "params", "every tensor of a row loss needs layout 'rows' or 'classes'")
    if spec.class_axis not in (1, -1):
        raise _fail(path, "class_axis", "must be 1 or -1")
    if len(targets) > 1:
        raise _fail(path, "params", "at most one ClassTarget")
    ints = {p.name for p in spec.params if isinstance(p, Int)}
    if spec.ignore_index and spec.ignore_index not in ints:
        raise _fail(path, "ignore_index", f"{spec.ignore_index!r} must name an Int parameter")
