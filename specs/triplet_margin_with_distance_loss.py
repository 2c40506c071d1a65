from compiler.lang import Distance, Flag, Loss, Real, Reduction, Tensor, clamp_min, minimum


def element(anchor, positive, negative, distance_function, margin, swap):
    # distance_function(a, b) is one distance per row, computed at run time by a compiled distance
    d_pos = distance_function(anchor, positive)
    d_neg = distance_function(anchor, negative)
    if swap:  # torch.minimum: at a tie the gradient is split between the two distances
        d_neg = minimum(d_neg, distance_function(positive, negative))
    return clamp_min(margin + d_pos - d_neg, 0)


def prepare(a):
    a.reduction_python()
    if a["margin"] <= 0:
        raise ValueError("margin must be greater than 0, got {}".format(a["margin"]))
    _pair.same_ndim(a, "anchor", "positive", "negative")


SPEC = Loss(
    name="triplet_margin_with_distance_loss",
    kind="chain",
    summary="max(0, margin + d(anchor, positive) - d(anchor, negative)) for a compiled distance d.",
    params=(
        Tensor("anchor", differentiable=True, doc="(N, D) or (D)"),
        Tensor("positive", differentiable=True, doc="as anchor"),
        Tensor("negative", differentiable=True, doc="as anchor"),
        Distance("distance_function", default="pairwise_distance", fused="triplet_margin_loss",
                 doc="None (pairwise_distance), or a distance compiled by losscc, e.g. cosine_distance"),
        Real("margin", 1.0),
        Flag("swap", False, doc="use min(d(anchor, negative), d(positive, negative))"),
        Reduction("mean"),
    ),
    element=element,
    prepare=prepare,
    notes=(
        "distance_function must be compiled by losscc (a pair spec without a reduction, e.g. "
        "generated.cosine_distance, or your own spec built with losscc build --specs DIR --out PKG); "
        "a plain Python function raises TypeError: its gradient cannot be derived.",
        "At the hinge the gradient passes, as torch's clamp_min; a swap tie splits it, as torch.minimum.",
        "With the default distance (None, or generated.pairwise_distance itself) and three arrays of one "
        "float dtype and shape, a call runs triplet_margin_loss's kernel, the same loss in one pass over "
        "memory where computing the distances, then their gradients, takes five.",
    ),
    test_options=({"margin": 0.5}, {"distance_function": "cosine_distance"}, {"distance_function": "pairwise_distance"}),
)
