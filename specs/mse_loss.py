from compiler.lang import Legacy, Loss, OptionalTensor, Reduction, SumOf, Tensor


def element(input, target, weight):
    return weight * (input - target) ** 2


def prepare(a):
    a.weighted_reduction()


SPEC = Loss(
    name="mse_loss",
    summary="Mean squared error: the squared difference of input and target.",
    params=(
        Tensor("input", differentiable=True, accepts_bool=True),
        Tensor("target", differentiable=True, accepts_bool=True),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
        OptionalTensor("weight", doc="per-element weight, exactly the shape of input; 'mean' divides by its sum"),
    ),
    element=element,
    float32_arithmetic=True,
    mean=SumOf("weight"),
    prepare=prepare,
    signature_only_prepare=True,  # its checks read shapes, dtypes and options, never values
)
