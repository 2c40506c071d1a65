from compiler.lang import Flag, Legacy, Loss, Real, Reduction, Tensor, exp, log, pi, where, xlogy


def element(input, target, log_input, full, eps):
    if log_input:
        loss = exp(input) - target * input
    else:
        loss = input - target * log(input + eps)
    if full:
        # Stirling's approximation of log(target!), only where target > 1. torch masks with
        # masked_fill, so its gradient is masked by multiplication: `where` reproduces that.
        # target * log(target) as xlogy (equal where target > 1): its derivative keeps autograd's
        # unsimplified target / target, nan at target = inf as torch's (not log(t) + 1)
        loss += where(target > 1, xlogy(target, target) - target + log(2 * pi * target) / 2, 0)
    return loss


def prepare(a):
    a.reduction_python()


SPEC = Loss(
    name="poisson_nll_loss",
    summary="Negative log likelihood of a Poisson distribution with rate exp(input) (or input).",
    params=(
        Tensor("input", differentiable=True, domain="positive", accepts_bool=True),
        Tensor("target", differentiable=True, domain="positive", accepts_bool=True),
        Flag("log_input", True, doc="input is the log of the rate"),
        Flag("full", False, doc="add the Stirling term for target > 1"),
        Legacy("size_average"),
        Real("eps", 1e-08, doc="added to input inside the log when log_input is False"),
        Legacy("reduce"),
        Reduction("mean"),
    ),
    element=element,
    prepare=prepare,
    signature_only_prepare=True,  # its checks read shapes, dtypes and options, never values
    integers_promote=True,
    notes=("With full=True the target gradient is nan at target = 0, as torch's (0 times -inf leaks through its mask).",),
)
