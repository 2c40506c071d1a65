from compiler.lang import (
    FEATURE,
    Flag,
    Legacy,
    Loss,
    Real,
    Reduction,
    Tensor,
    clamp_min,
    computed_first,
    minimum,
    oo,
    p_norm,
)


def element(anchor, positive, negative, margin, p, eps, swap):
    def distance(a, b):  # torch's pairwise_distance: eps added to every coordinate of a - b
        return p_norm(computed_first(a[FEATURE] - b[FEATURE]) + eps, p)

    d_pos = distance(anchor, positive)
    d_neg = distance(anchor, negative)
    if swap:  # torch.min of the two: at a tie the gradient is split between them
        d_neg = minimum(d_neg, distance(positive, negative))
    return clamp_min(margin + d_pos - d_neg, 0)


def prepare(a):
    a.reduction_cpp()
    if a["margin"] <= 0:
        raise ValueError("margin must be greater than 0, got {}".format(a["margin"]))
    _pair.same_ndim(a, "anchor", "positive", "negative")


SPEC = Loss(
    name="triplet_margin_loss",
    kind="pair",
    summary="max(0, margin + d(anchor, positive) - d(anchor, negative)), d the pairwise p-norm distance.",
    params=(
        Tensor("anchor", differentiable=True, layout="rows", doc="(N, D) or (D)"),
        Tensor("positive", differentiable=True, layout="rows", doc="as anchor (broadcast)"),
        Tensor("negative", differentiable=True, layout="rows", doc="as anchor (broadcast)"),
        Real("margin", 1.0),
        Real("p", 2, specialize=(2, 1, oo, -oo, 0), doc="order of the norm"),
        Real("eps", 1e-6, doc="added to every coordinate of each difference"),
        Flag("swap", False, doc="use min(d(anchor, negative), d(positive, negative))"),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
    ),
    element=element,
    prepare=prepare,
    integers_promote=True,
    notes=(
        "At the hinge (margin + d_pos - d_neg exactly 0) the gradient passes, as torch's clamp_min.",
        "With swap, a tie d(anchor, negative) == d(positive, negative) splits the gradient half and half, as torch.min.",
    ),
    test_options=({"p": 1.0}, {"p": float("inf")}, {"p": 1.5}, {"margin": 0.5}, {"eps": 0.0}),
)
