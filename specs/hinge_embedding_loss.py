from compiler.lang import Legacy, Loss, Ne, Real, Reduction, Tensor, clamp_min, where


def element(input, target, margin):
    # torch: where(target != 1, clamp_min(margin - input, 0), 0) + where(target != -1, input, 0);
    # a target other than +-1 takes both terms
    return where(Ne(target, 1), clamp_min(margin - input, 0), 0) + where(Ne(target, -1), input, 0)


def prepare(a):
    a.reduction_cpp()
    x = a["input"]
    if x.dtype.kind != "f":
        # torch computes in input's integer dtype: the margin is cast to it (truncated toward zero)
        # and 'mean' has no integer result type
        if a.reduction == "mean":
            torch_names = {"int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte"}
            raise rt.InvalidArgument(
                "mean(): could not infer output dtype. Input dtype must be either a floating point or "
                "complex dtype. Got: " + torch_names.get(x.dtype.name, x.dtype.name)
            )
        if not np.isfinite(a["margin"]):
            raise ValueError("margin must be finite for integer input, got {}".format(a["margin"]))
        a["margin"] = float(int(a["margin"]))
        a.integer_result = True


SPEC = Loss(
    name="hinge_embedding_loss",
    summary="Hinge embedding loss: input for target 1, max(0, margin - input) for target -1.",
    params=(
        Tensor("input", differentiable=True),
        Tensor("target", differentiable=False, domain="sign"),
        Real("margin", 1.0),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
    ),
    element=element,
    prepare=prepare,
    signature_only_prepare=True,  # its checks read shapes, dtypes and options, never values
    result_dtype="input",
    test_options=({"margin": 0.0}, {"margin": -0.5}),
)
