from compiler.lang import Legacy, Loss, OptionalTensor, Reduction, Tensor, softplus, stop_gradient, two_forms


def element(input, target, weight, pos_weight):
    # torch's forward: (1 - y) x - (1 + (pw - 1) y) log_sigmoid(x)
    value = (1 - target) * input + (1 + (pos_weight - 1) * target) * softplus(-input)
    if pos_weight == 1:  # absent: torch's gradients are this form's, sigmoid(x) - y and -x
        return weight * value
    # with pos_weight torch's backward uses other, equal forms: (pw y + 1 - y) sigmoid(x) - pw y
    # for input and log_sigmoid(-x) - pw log_sigmoid(x) for target, which differ from the
    # derivatives of `value` at infinities and in rounding. Each is the derivative of one term:
    x, y = stop_gradient(input), stop_gradient(target)
    for_input = (pos_weight * y + 1 - y) * softplus(input) - pos_weight * y * input
    for_target = target * (pos_weight * softplus(-x) - softplus(x))
    return weight * two_forms(value, for_input + for_target)


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
    signature_only_prepare=True,  # its checks read shapes, dtypes and options, never values
    result_dtype="target",
)
