from compiler.lang import (
    CLASS,
    CLASSES,
    ClassTarget,
    Int,
    Legacy,
    Loss,
    OptionalTensor,
    Real,
    Reduction,
    TargetWeightSum,
    Tensor,
    class_sum,
    is_class_index,
    log_softmax_denominator,
)


def element(input, target, weight, label_smoothing):
    log_norm = log_softmax_denominator(input[CLASS])  # log_softmax(x)_c = x_c - log_norm
    smooth = label_smoothing / CLASSES * class_sum(weight[CLASS] * (log_norm - input[CLASS]))
    if is_class_index(target):
        return (1 - label_smoothing) * weight[target] * (log_norm - input[target]) + smooth
    # probabilities: t' = (1 - eps) t + eps / C, loss = -sum_c w_c t'_c log_softmax(x)_c
    return (1 - label_smoothing) * class_sum(weight[CLASS] * target[CLASS] * (log_norm - input[CLASS])) + smooth


def prepare(a):
    a.reduction_cpp()
    x, t = a["input"], a["target"]
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    a.class_weight_check(classes, like=x, same_dtype=t.shape != x.shape)  # nll's kernel insists
    if not 0.0 <= a["label_smoothing"] <= 1.0:
        if a["label_smoothing"] > 1.0:
            raise rt.InvalidArgument("label_smoothing must be between 0.0 and 1.0. Got: {}".format(a["label_smoothing"]))
        a["label_smoothing"] = 0.0  # torch treats a negative smoothing as none
    if t.shape == x.shape:
        if t.dtype.kind != "f":
            raise rt.InvalidArgument("Expected floating point type for target with class probabilities, got {}".format(t.dtype))
        if a["ignore_index"] != -100:
            raise rt.InvalidArgument("ignore_index is not supported for floating point target")
        a["probabilities"] = True
    else:
        a.class_target_check(classes, ignore_index=a["ignore_index"])


SPEC = Loss(
    name="cross_entropy",
    kind="row",
    summary="Cross entropy of logits (class axis 1) against class indices or class probabilities.",
    params=(
        Tensor("input", differentiable=True, layout="rows", doc="logits (C), (N, C) or (N, C, d1, ..., dk)"),
        ClassTarget("target", probabilities_switch="probabilities",
                    doc="class indices (N, d1, ..., dk), or probabilities shaped like input"),
        OptionalTensor("weight", layout="classes", doc="a weight per class, shape (C,); not differentiable"),
        Legacy("size_average"),
        Int("ignore_index", -100, doc="targets of this value contribute nothing (class indices only)"),
        Legacy("reduce"),
        Reduction("mean"),
        Real("label_smoothing", 0.0, doc="mixes the target with the uniform distribution, in [0, 1]",
             specialize_zero=True),
    ),
    element=element,
    mean=TargetWeightSum("weight"),
    ignore_index="ignore_index",
    prepare=prepare,
    signature_only_prepare=True,  # of values, prepare reads only the targets' range (a RowPlan checks it)
    notes=(
        "'mean' divides by the sum of weight[target] over targets not ignored (their count without a "
        "weight); with probability targets, by the number of rows.",
        "All targets ignored: 'mean' is nan (0/0) and the gradient is zero, as torch.",
    ),
)
