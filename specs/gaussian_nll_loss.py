from compiler.lang import Flag, Loss, Real, Reduction, Tensor, clamp_min_st, log, pi


def element(input, target, var, full, eps):
    # torch clamps var under no_grad: the value is max(var, eps), the gradient passes straight through
    v = clamp_min_st(var, eps)
    loss = (log(v) + (input - target) ** 2 / v) / 2
    return loss + log(2 * pi) / 2 if full else loss


def prepare(a):
    raw, x = a.raw["var"], a["input"]
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        # a Python number: a constant variance, with no gradient (torch: var * ones_like(input))
        if raw < 0:
            raise ValueError("var has negative entry/entries")
        a["var"] = np.full(x.shape, raw, dtype=x.dtype if x.dtype.kind == "f" else np.float32)
        a.original_shapes["var"] = x.shape
        a.original_dtypes["var"] = a["var"].dtype
        a.no_grad.add("var")
    elif not rt.all_within(a["var"], 0.0, np.inf) and np.any(a["var"] < 0):  # one pass when clean
        raise ValueError("var has negative entry/entries")
    var = a["var"]
    if var.shape != x.shape:
        if x.shape[:-1] == var.shape:
            a["var"] = var.reshape(var.shape + (1,))  # homoscedastic: one variance per row
        elif not (var.ndim == x.ndim and sum(v for i, v in zip(x.shape, var.shape) if i != v) == 1):
            raise ValueError("var is of incorrect size")
    a.reduction_python("not_valid")
    if a["var"].dtype.kind != "f":  # torch clamps a clone of var in place: integers cannot hold eps
        c_names = {"int64": "long int", "int32": "int", "int16": "short int", "int8": "signed char", "uint8": "unsigned char"}
        raise rt.InvalidArgument(
            "result type Float can't be cast to the desired output type "
            + c_names.get(a["var"].dtype.name, a["var"].dtype.name)
        )


SPEC = Loss(
    name="gaussian_nll_loss",
    summary="Negative log likelihood of a Gaussian with mean input and variance var.",
    params=(
        Tensor("input", differentiable=True),
        Tensor("target", differentiable=True),
        Tensor("var", differentiable=True, domain="positive"),
        Flag("full", False, doc="add the constant log(2 pi)/2", strict=False),
        Real("eps", 1e-06, doc="var is clamped from below at eps (value only; the gradient passes)"),
        Reduction("mean"),
    ),
    element=element,
    prepare=prepare,
    integers_promote=True,
    notes=(
        "var may be a Python number (no gradient is returned for it), an array of input's shape, of "
        "input's shape without the last axis, or with exactly one axis of size 1 where input's differs.",
        "A Python int var is accepted as a float; torch raises TypeError for it.",
    ),
    test_options=({"eps": 0.5},),
)
