from compiler.lang import ClassTarget, Int, Legacy, Loss, OptionalTensor, Reduction, TargetWeightSum, Tensor


def element(input, target, weight):
    return -weight[target] * input[target]


def prepare(a):
    a.reduction_cpp()
    x = a["input"]
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    a.class_weight_check(classes, like=x)
    a.class_target_check(classes, ignore_index=a["ignore_index"])


SPEC = Loss(
    name="nll_loss",
    kind="row",
    summary="Negative log likelihood: minus the input (log-probabilities) at the target class, weighted.",
    params=(
        Tensor("input", differentiable=True, layout="rows", doc="log-probabilities (C), (N, C) or (N, C, d1, ..., dk)"),
        ClassTarget("target", doc="class indices (N, d1, ..., dk)"),
        OptionalTensor("weight", layout="classes", doc="a weight per class, shape (C,); not differentiable"),
        Legacy("size_average"),
        Int("ignore_index", -100, doc="targets of this value contribute nothing"),
        Legacy("reduce"),
        Reduction("mean"),
    ),
    element=element,
    mean=TargetWeightSum("weight"),
    ignore_index="ignore_index",
    prepare=prepare,
    signature_only_prepare=True,  # of values, prepare reads only the targets' range (a RowPlan checks it)
    notes=(
        "'mean' divides by the sum of weight[target] over targets not ignored; all ignored gives nan "
        "and a zero gradient, as torch.",
    ),
)
