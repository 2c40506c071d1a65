from compiler.lang import Abs, Legacy, Loss, OptionalTensor, Reduction, SumOf, Tensor


def element(input, target, weight):
    # d|u|/du = sign(u), and sign(0) = 0: torch's subgradient at the kink
    return weight * Abs(input - target)


def prepare(a):
    a.weighted_reduction()


SPEC = Loss(
    name="l1_loss",
    summary="Mean absolute error: the absolute difference of input and target.",
    params=(
        Tensor("input", differentiable=True),
        Tensor("target", differentiable=True),
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
    notes=("The gradient at input == target is 0, and at a nan difference it is 0, as torch's sign().",),
)
