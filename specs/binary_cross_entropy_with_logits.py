from compiler.lang import Legacy, Loss, OptionalTensor, Reduction, Tensor, softplus


def element(input, target, weight, pos_weight):
    return weight * ((1 - target) * input + (1 + (pos_weight - 1) * target) * softplus(-input))


def prepare(a):
    a.reduction_cpp()
    a.require_same_size("Target size ({target}) must be the same as input size ({input})")
    if a["input"].dtype.kind != "f":
        raise ValueError("binary_cross_entropy_with_logits needs floating point input, got {}".format(a["input"].dtype))
    a.require_inside("input")


SPEC = Loss(
    name="binary_cross_entropy_with_logits",
    summary="Binary cross entropy on logits: sigmoid and BCE fused, computed with a stable softplus.",
    params=(
        Tensor("input", differentiable=True),
        Tensor("target", differentiable=True, domain="unit"),
        OptionalTensor("weight", doc="rescales each element; broadcast to input's shape; not differentiable"),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
        OptionalTensor("pos_weight", doc="weight of the positive term, broadcast along the last axis; not differentiable"),
    ),
    element=element,
    prepare=prepare,
    result_dtype="target",
)
