from compiler.lang import FEATURE, Int, Loss, Real, Tensor, cosine


def element(x1, x2, eps):
    # the distance of torch's tutorials, 1 - cosine_similarity(x1, x2), as its own spec: a distance
    # the compiler differentiates, usable as triplet_margin_with_distance_loss's distance_function
    return 1 - cosine(x1[FEATURE], x2[FEATURE], eps)


def prepare(a):
    _pair.cosine_checks(a)  # eps >= 0, a floating point argument


SPEC = Loss(
    name="cosine_distance",
    kind="pair",
    torch_name="1 - torch.nn.functional.cosine_similarity",
    summary="One minus the cosine similarity of x1 and x2 along dim: the distance of torch's triplet tutorial.",
    params=(
        Tensor("x1", differentiable=True, layout="rows", accepts_bool=True, doc="broadcast with x2"),
        Tensor("x2", differentiable=True, layout="rows", accepts_bool=True),
        Int("dim", 1, doc="the feature axis of the broadcast shape"),
        Real("eps", 1e-8, doc="lower bound of each norm (straight-through)"),
    ),
    element=element,
    prepare=prepare,
    feature_dim="dim",
    integers_promote=True,
    notes=(
        "Example: triplet_margin_with_distance_loss(anchor, positive, negative, "
        "distance_function=generated.cosine_distance) equals torch's with "
        "distance_function=lambda x, y: 1.0 - F.cosine_similarity(x, y), gradients included.",
        "A distance spec of your own works the same way: kind='pair', no Reduction, compiled with "
        "losscc build --specs DIR --out PKG.",
    ),
    test_options=({"dim": -1}, {"eps": 0.5}),
)
