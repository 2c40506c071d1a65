from compiler.lang import CLASS, CLASSES, Legacy, Loss, OptionalTensor, Reduction, Tensor, class_sum, softplus


def element(input, target, weight):
    # -(y log sigmoid(x) + (1 - y) log sigmoid(-x)) = y softplus(-x) + (1 - y) softplus(x)
    x, y = input[CLASS], target[CLASS]
    return class_sum(weight[CLASS] * (y * softplus(-x) + (1 - y) * softplus(x))) / CLASSES


def prepare(a):
    a.reduction_python("not_valid")
    x = a["input"]
    for name in ("target", "weight"):
        value = a[name]
        if value is not None:
            shape = rt.broadcast_shape([("input", x.shape), (name, value.shape)])
            if shape != x.shape:
                raise rt.InvalidArgument(
                    "{} of shape {} would broadcast input {} to {}".format(
                        name, rt.fmt_shape(value.shape), rt.fmt_shape(x.shape), rt.fmt_shape(shape)
                    )
                )


SPEC = Loss(
    name="multilabel_soft_margin_loss",
    kind="row",
    class_axis=-1,
    summary="Multi-label one-versus-all logistic loss, averaged over the classes (the last axis).",
    params=(
        Tensor("input", differentiable=True, layout="rows", doc="logits (..., C)"),
        Tensor("target", differentiable=True, layout="rows", domain="unit", doc="labels in [0, 1], broadcast to input"),
        OptionalTensor("weight", layout="rows", doc="broadcast to input, e.g. one per class (C,)"),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
    ),
    element=element,
    prepare=prepare,
    notes=(
        "x = +-inf gives nan as in torch (0 times inf in the term of the other label).",
        "A target or weight that would enlarge input's shape is an error (torch then sums over the wrong axis).",
    ),
)
