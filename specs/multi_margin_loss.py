from compiler.lang import (
    CLASS,
    CLASSES,
    ClassTarget,
    Eq,
    Flag,
    Legacy,
    Loss,
    OptionalTensor,
    Piecewise,
    Real,
    Reduction,
    Tensor,
    class_sum,
    computed_first,
    relu_strict,
)


def element(input, target, p, margin, weight):
    def hinge(j):
        # torch's kernel takes the hinge strictly: zero gradient where the argument is exactly 0,
        # and adds in the order (margin - x[target]) + x[j]
        return relu_strict(computed_first(margin - input[target]) + input[j]) ** p

    # the sum over the classes other than the target (an infinite score must not meet itself)
    return weight[target] * class_sum(Piecewise((0, Eq(CLASS, target)), (hinge(CLASS), True))) / CLASSES


def prepare(a):
    a.reduction_cpp()
    x, t, w = a["input"], a["target"], a["weight"]
    if w is not None and w.ndim != 1:
        raise ValueError("weight must be one-dimensional")
    a.require_vector_or_matrix()
    classes = x.shape[-1]
    if w is not None:
        if w.shape[0] != classes:
            raise rt.InvalidArgument("inconsistent weight size, expected {} but got {}".format(classes, list(w.shape)))
        a.class_weight_check(classes, like=x)  # and of the input's dtype, as torch's kernel insists
    a.class_target_check(classes)


SPEC = Loss(
    name="multi_margin_loss",
    kind="row",
    summary="Multi-class hinge loss: sum over the other classes of max(0, margin - x[y] + x[j])^p, over C.",
    params=(
        Tensor("input", differentiable=True, layout="rows", doc="scores (C) or (N, C)"),
        ClassTarget("target", doc="class indices (N)"),
        Flag("p", 1, values=(1, 2), error="only p == 1 and p == 2 supported", doc="1 or 2"),
        Real("margin", 1.0),
        OptionalTensor("weight", layout="classes", doc="a weight per class, taken at the target; not differentiable"),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
    ),
    element=element,
    prepare=prepare,
    notes=(
        "The gradient is zero where margin - x[y] + x[j] is exactly 0, as torch's kernel.",
        "For an empty batch 'mean' is nan and 'sum' is 0; torch returns uninitialised memory there.",
    ),
    test_options=({"margin": 0.5},),
)
