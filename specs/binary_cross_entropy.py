from compiler.lang import Legacy, Loss, OptionalTensor, Reduction, Tensor, bce_term


def element(input, target, weight):
    # bce_term carries torch's clamps: logs at -100, input gradient over max(x(1-x), 1e-12)
    return weight * bce_term(input, target)


def prepare(a):
    a.reduction_cpp()
    a.require_same_size(
        "Using a target size ({target}) that is different to the input size ({input}) is deprecated. "
        "Please ensure they have the same size."
    )
    x, y = a["input"], a["target"]
    if x.dtype != y.dtype:
        raise rt.InvalidArgument("Found dtype {} but expected {}".format(y.dtype, x.dtype))
    if x.dtype.kind != "f":
        raise ValueError("binary_cross_entropy needs floating point input, got {}".format(x.dtype))
    outside_input, outside_target = rt.outside_counts((x, y), 0.0, 1.0)  # one pass over both
    if outside_input:
        raise rt.InvalidArgument("all elements of input should be between 0 and 1")
    if outside_target:
        raise rt.InvalidArgument("all elements of target should be between 0 and 1")
    a.require_inside("input")


SPEC = Loss(
    name="binary_cross_entropy",
    summary="Binary cross entropy between probabilities (input) and targets in [0, 1].",
    params=(
        Tensor("input", differentiable=True, domain="unit"),
        Tensor("target", differentiable=True, domain="unit"),
        OptionalTensor("weight", doc="rescales each element; broadcast to input's shape; not differentiable"),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
    ),
    element=element,
    float32_arithmetic=True,
    prepare=prepare,
    notes=(
        "As torch: each log is clamped at -100; the input gradient is (x - y)/max(x(1 - x), 1e-12); "
        "the target gradient uses the unclamped logs (+inf at x = 0, -inf at x = 1).",
    ),
)
