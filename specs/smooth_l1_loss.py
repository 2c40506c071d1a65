from compiler.lang import Abs, Eq, Legacy, Loss, Piecewise, Real, Reduction, Tensor


def element(input, target, beta):
    # beta = 0 is torch's l1_loss (gradient 0 at a nan difference); otherwise the quadratic
    # branch comes last, as torch's kernel, so a nan difference gets a nan gradient
    d = input - target
    return Piecewise(
        (Abs(d), Eq(beta, 0)),
        (-d - beta / 2, d < -beta),
        (d - beta / 2, d > beta),
        (d**2 / (2 * beta), True),
    )


def prepare(a):
    a.warn_if_size_differs()
    a.reduction_cpp()
    if not a["beta"] >= 0:
        raise rt.InvalidArgument("smooth_l1_loss does not support negative values for beta.")


SPEC = Loss(
    name="smooth_l1_loss",
    summary="Smooth L1 loss: quadratic below beta (scaled by 1/beta), absolute error beyond.",
    params=(
        Tensor("input", differentiable=True, accepts_bool=True),
        Tensor("target", differentiable=True, accepts_bool=True),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
        Real("beta", 1.0, doc="the switch point; 0 gives l1_loss; negative is an error", specialize_zero=True),
    ),
    element=element,
    float32_arithmetic=True,
    prepare=prepare,
    signature_only_prepare=True,  # its checks read shapes, dtypes and options, never values
    test_options=({"beta": 0.0}, {"beta": 0.5}, {"beta": 2.0}),
)
