from compiler.lang import Loss, OptionalTensor, Piecewise, Real, Reduction, Tensor


def element(input, target, delta, weight):
    # the quadratic branch last, as torch's kernel: a nan difference gets a nan gradient
    d = input - target
    return weight * Piecewise(
        (delta * (-d - delta / 2), d < -delta),
        (delta * (d - delta / 2), d > delta),
        (d**2 / 2, True),
    )


def prepare(a):
    a.weighted_reduction()
    if a["weight"] is not None:
        a.result_dtype = "promote"  # the weighted path multiplies in Python: ordinary promotion
    if not a["delta"] > 0:
        raise rt.InvalidArgument("huber_loss does not support non-positive values for delta.")


SPEC = Loss(
    name="huber_loss",
    summary="Huber loss: quadratic for differences below delta, linear beyond.",
    params=(
        Tensor("input", differentiable=True),
        Tensor("target", differentiable=True, accepts_bool=True),
        Reduction("mean"),
        Real("delta", 1.0, doc="where the quadratic part turns linear; must be positive"),
        OptionalTensor("weight", doc="per-element weight, exactly the shape of input; 'mean' divides by the count"),
    ),
    element=element,
    float32_arithmetic=True,
    prepare=prepare,
    signature_only_prepare=True,  # its checks read shapes, dtypes and options, never values
    result_dtype="input",
    test_options=({"delta": 0.5}, {"delta": 2.0}),
)
