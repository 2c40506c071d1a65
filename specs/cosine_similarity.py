from compiler.lang import FEATURE, Int, Loss, Real, Tensor, cosine


def element(x1, x2, eps):
    # torch's cosine_similarity: norms clamped at eps straight through, see lang.cosine
    return cosine(x1[FEATURE], x2[FEATURE], eps)


def prepare(a):
    _pair.cosine_checks(a)  # eps >= 0, a floating point argument


SPEC = Loss(
    name="cosine_similarity",
    kind="pair",
    summary="Cosine of the angle between x1 and x2 along dim, each norm clamped at eps.",
    params=(
        Tensor("x1", differentiable=True, layout="rows", accepts_bool=True, doc="broadcast with x2"),
        Tensor("x2", differentiable=True, layout="rows", accepts_bool=True),
        Int("dim", 1, doc="the feature axis of the broadcast shape"),
        Real("eps", 1e-8, doc="lower bound of each norm (straight-through: the gradient passes)"),
    ),
    element=element,
    prepare=prepare,
    feature_dim="dim",
    integers_promote=True,
    notes=(
        "The norm clamps are straight-through, as torch's (clamped under no_grad): the gradient is "
        "computed with the clamped value, not zeroed.",
    ),
    test_options=({"dim": -1}, {"dim": 0}, {"eps": 0.5}),
)
