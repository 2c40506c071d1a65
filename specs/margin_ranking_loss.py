from compiler.lang import Legacy, Loss, Real, Reduction, Tensor, clamp_min


def element(input1, input2, target, margin):
    return clamp_min(-target * (input1 - input2) + margin, 0)


def prepare(a):
    a.reduction_cpp()
    x1, x2, y = a["input1"], a["input2"], a["target"]
    if not x1.ndim == x2.ndim == y.ndim:
        raise rt.InvalidArgument(
            "margin_ranking_loss : All input tensors should have same dimension but got sizes: "
            "input1: {}, input2: {}, target: {}".format(rt.fmt_shape(x1.shape), rt.fmt_shape(x2.shape), rt.fmt_shape(y.shape))
        )


SPEC = Loss(
    name="margin_ranking_loss",
    summary="Ranking hinge: max(0, -target * (input1 - input2) + margin) for targets of +1 or -1.",
    params=(
        Tensor("input1", differentiable=True),
        Tensor("input2", differentiable=True),
        Tensor("target", differentiable=True, domain="sign"),
        Real("margin", 0),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
    ),
    element=element,
    prepare=prepare,
    signature_only_prepare=True,  # its checks read shapes, dtypes and options, never values
    integers_promote=True,
    notes=("At the hinge (argument exactly 0) the gradient passes, as torch's clamp_min.",),
    test_options=({"margin": 0.5}, {"margin": -0.5}),
)
