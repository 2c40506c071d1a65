from compiler.lang import BatchSize, Flag, Legacy, Loss, Reduction, Tensor, exp, xlogy


def element(input, target, log_target):
    if log_target:
        return exp(target) * (target - input)
    return xlogy(target, target) - target * input


def prepare(a):
    if a.reduction == "mean" and not a.legacy_used:
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support size."
            "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
            "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
            UserWarning,
            stacklevel=4,
        )
    a.reduction_cpp(extra=("batchmean",))
    if any(a[name].dtype.kind != "f" for name in ("input", "target")):
        raise rt.InvalidArgument("kl_div: Integral inputs not supported.")


SPEC = Loss(
    name="kl_div",
    summary="Kullback-Leibler divergence of target from input, with input given as log-probabilities.",
    params=(
        Tensor("input", differentiable=True),
        Tensor("target", differentiable=True, domain="unit"),
        Legacy("size_average"),
        Legacy("reduce"),
        Reduction("mean"),
        Flag("log_target", False, doc="target is given as log-probabilities"),
    ),
    element=element,
    float32_arithmetic=True,  # torch's own formula, computed in float32 as torch does
    extra_reductions=(("batchmean", BatchSize("input")),),
    prepare=prepare,
    notes=(
        "'mean' divides by the number of elements and warns, as torch; 'batchmean' divides by input's "
        "first dimension (no division for a 0-d input).",
        "The target gradient is nan at target = 0 (log_target=False), as torch's xlogy backward.",
    ),
)
