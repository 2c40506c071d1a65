from compiler.lang import FEATURE, Eq, Legacy, Loss, Real, Reduction, Tensor, clamp_min, feature_sum, sqrt, where

EPSILON = 1e-12  # aten Loss.cpp: added to each squared norm (not cosine_similarity's clamp)


def element(input1, input2, target, margin):
    x1, x2 = input1[FEATURE], input2[FEATURE]
    cos = feature_sum(x1 * x2) / sqrt((feature_sum(x1 * x1) + EPSILON) * (feature_sum(x2 * x2) + EPSILON))
    # torch.where masks by multiplication: any target other than 1 and -1 gives 0
    return where(Eq(target, 1), 1 - cos, 0) + where(Eq(target, -1), clamp_min(cos - margin, 0), 0)


def prepare(a):
    a.reduction_cpp()
    x1, x2, y = a["input1"], a["input2"], a["target"]
    if y.ndim > 1:
        raise rt.InvalidArgument("0D or 1D target tensor expected, multi-target not supported")
    if y.ndim == 1 and not (x1.ndim == 2 and x2.ndim == 2):
        raise rt.InvalidArgument("1D target tensor expects 2D input tensors, but found inputs with sizes {} and {}.".format(
            list(x1.shape), list(x2.shape)))
    if y.ndim == 0 and not (x1.ndim == 1 and x2.ndim == 1):
        raise rt.InvalidArgument("0D target tensor expects 1D input tensors, but found inputs with sizes {} and {}.".format(
            list(x1.shape), list(x2.shape)))


SPEC = Loss(
    name="cosine_embedding_loss",
    kind="pair",
    summary="1 - cos(x1, x2) for target 1, max(0, cos(x1, x2) - margin) for target -1, over the last axis.",
    params=(
        Tensor("input1", differentiable=True, layout="rows", accepts_bool=True, doc="(N, D) or (D)"),
        Tensor("input2", differentiable=True, layout="rows", accepts_bool=True, doc="(N, D) or (D), broadcast with input1"),
        Tensor("target", differentiable=False, layout="row", domain="sign", doc="1 or -1 per row: (N) or ()"),
        Real("margin", 0),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
    ),
    element=element,
    prepare=prepare,
    integers_promote=True,
    notes=(
        "cos adds 1e-12 to each squared norm, as torch (cosine_similarity clamps the norms instead).",
        "At the hinge (cos - margin exactly 0) the gradient passes, as torch's clamp_min.",
    ),
    test_options=({"margin": 0.5}, {"margin": -0.5}),
)
