from compiler.lang import FEATURE, Bool, Loss, Real, Tensor, computed_first, oo, p_norm


def element(x1, x2, p, eps):
    # torch adds eps to every coordinate of the difference (aten Distance.cpp), then takes the norm
    return p_norm(computed_first(x1[FEATURE] - x2[FEATURE]) + eps, p)


SPEC = Loss(
    name="pairwise_distance",
    kind="pair",
    summary="The p-norm of x1 - x2 + eps over the last axis: one distance per row.",
    params=(
        Tensor("x1", differentiable=True, layout="rows", doc="(..., D); broadcast with x2"),
        Tensor("x2", differentiable=True, layout="rows", doc="(..., D)"),
        Real("p", 2.0, specialize=(2, 1, oo, -oo, 0), doc="order of the norm: any real, inf, -inf or 0 (a count)"),
        Real("eps", 1e-6, doc="added to every coordinate of the difference"),
        Bool("keepdim", False, doc="keep the reduced axis with size 1"),
    ),
    element=element,
    integers_promote=True,
    notes=(
        "A compiled distance: it can be passed as distance_function to triplet_margin_with_distance_loss.",
        "p = 0 counts the non-zero coordinates: its gradient is zero (torch's autograd has none).",
    ),
    test_options=({"p": 1.0}, {"p": float("inf")}, {"p": float("-inf")}, {"p": 0.0}, {"p": 1.5}, {"p": 0.5}, {"p": 3}, {"p": -1.0},
                  {"eps": 0.0}, {"keepdim": True}),
)
