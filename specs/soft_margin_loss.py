from compiler.lang import Legacy, Loss, Reduction, Tensor, softplus


def element(input, target):
    return softplus(-target * input)


def prepare(a):
    a.reduction_cpp()
    a.require_inside("input")


SPEC = Loss(
    name="soft_margin_loss",
    summary="Two-class logistic loss log(1 + exp(-target * input)) for targets of +1 or -1.",
    params=(
        Tensor("input", differentiable=True),
        Tensor("target", differentiable=False, domain="sign"),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
    ),
    element=element,
    float32_arithmetic=True,
    prepare=prepare,
    signature_only_prepare=True,  # its checks read shapes, dtypes and options, never values
    result_dtype="input",
    notes=(
        "Computed with a stable softplus: where torch overflows (-target*input above about 88.7 in "
        "float32 or 709.8 in float64) it returns inf and a nan gradient; losscc returns the finite "
        "value and gradient.",
    ),
)
