from compiler.lang import Legacy, Loss, OptionalTensor, Reduction, SumOf, Tensor


def element(input, target, weight):
    return weight * (input - target) ** 2


def prepare(a):
    if a["weight"] is not None:
        a.require_weight_size()
        a.reduction_python("invalid_mode")
    else:
        a.reduction_cpp()
    a.warn_if_size_differs()


SPEC = Loss(
    name="mse_loss",
    summary="Mean squared error: the squared difference of input and target.",
    params=(
        Tensor("input", differentiable=True),
        Tensor("target", differentiable=True),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
        OptionalTensor("weight", doc="per-element weight, exactly the shape of input"),
    ),
    element=element,
    mean=SumOf("weight"),
    prepare=prepare,
)
