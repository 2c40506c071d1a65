from compiler.lang import Legacy, Loss, Ne, Real, Reduction, Tensor, clamp_min, where


def element(input, target, margin):
    # torch: where(target != 1, clamp_min(margin - input, 0), 0) + where(target != -1, input, 0);
    # a target other than +-1 takes both terms
    return where(Ne(target, 1), clamp_min(margin - input, 0), 0) + where(Ne(target, -1), input, 0)


SPEC = Loss(
    name="hinge_embedding_loss",
    summary="Hinge embedding loss: input for target 1, max(0, margin - input) for target -1.",
    params=(
        Tensor("input", differentiable=True),
        Tensor("target", differentiable=False, domain="sign"),
        Real("margin", 1.0),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
    ),
    element=element,
    result_dtype="input",
    test_options=({"margin": 0.0}, {"margin": -0.5}),
)
