from compiler.lang import (
    STATE,
    STEP,
    Eq,
    Flag,
    Int,
    Loss,
    Ne,
    Option,
    PerSample,
    Piecewise,
    Recurrence,
    Reduction,
    Step,
    Tensor,
    logaddexp,
    logsumexp3,
    oo,
)

# The forward algorithm over the extended labels l' = (blank, y1, blank, y2, ..., yL, blank),
# in log space: alpha[t, s] = lse(alpha[t-1, s], alpha[t-1, s-1], alpha[t-1, s-2] where
# l'[s] != l'[s-2]) + log_probs[t, l'[s]]. The row before t = 0 is 0 at s = 0 and -inf
# elsewhere, which gives alpha[0, 0] = lp[0, blank] and alpha[0, 1] = lp[0, y1].
RECURRENCE = Recurrence(
    predecessors=(
        Step(-1, 0),
        Step(-1, -1),
        Step(-1, -2, guard=lambda labels: Ne(labels[STATE], labels[STATE - 2])),
    ),
    combine=lambda stay, advance, skip: logsumexp3(stay, advance, skip),
    emission=lambda log_probs, labels: log_probs[STEP, labels[STATE]],
    absent=-oo,
    initial=lambda s: Piecewise((0, Eq(s, 0)), (-oo, True)),
    # -log p(target): the paths end in the last label or the blank after it
    readout=lambda end: -logaddexp(end(0), end(1)),
    arrays=(("log_probs", 1, "steps"), ("labels", 0, "states")),
    zero_infinity="zero_infinity",
    torch_log_softmax="log_probs",
    exact_option="exact_gradient",
)


def prepare(a):
    a.reduction_cpp()
    log_probs = a.array("log_probs")
    if log_probs.ndim not in (2, 3):
        raise rt.InvalidArgument(
            "Expected 3-dimensional tensor, but got {}-dimensional tensor for argument #1 'log_probs'".format(log_probs.ndim))
    if log_probs.dtype not in (np.float32, np.float64):
        raise ValueError("log_probs must be float32 or float64, got {}".format(log_probs.dtype))
    batched = log_probs.ndim == 3
    if not batched:
        a.unbatched = True
        log_probs = log_probs[:, None, :]
    steps, samples, classes = log_probs.shape
    if log_probs.size == 0:
        raise rt.InvalidArgument("log_probs tensor must not be empty")
    blank = a["blank"]
    if not 0 <= blank < classes:
        raise rt.InvalidArgument("blank must be in label range")
    input_lengths = a.lengths("input_lengths", samples, batched)
    target_lengths = a.lengths("target_lengths", samples, batched)
    a.require_at_most("input_lengths", input_lengths, steps, "the number of time steps of log_probs")
    targets = a.labels("targets", samples, target_lengths, batched)
    a.require_labels("targets", targets, target_lengths, classes, blank)
    # extended labels: blank, y1, blank, y2, ..., yL, blank, padded with blanks like the table
    longest = targets.shape[1]
    labels = np.full((samples, 2 * longest + 1 + 2 * PAD), blank, dtype=np.int64)
    if samples and target_lengths.min() < longest:  # the padding of shorter targets: blanks
        targets = np.where(np.arange(longest) < target_lengths[:, None], targets, blank)
    labels[:, PAD + 1:PAD + 1 + 2 * longest:2] = targets
    a["log_probs"] = log_probs
    a["labels"] = labels
    a["target_lengths"] = target_lengths
    a.extent(input_lengths, 2 * target_lengths + 1)


def example(shape, dtype, rng):
    """Benchmark inputs of shape (T, N, C, S): log_softmax of random logits, N padded targets of
    S labels (never blank), every input and target used in full."""
    import numpy as np

    steps, samples, classes, longest = shape
    logits = rng.standard_normal((steps, samples, classes))
    log_probs = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    targets = rng.integers(1, classes, size=(samples, longest))
    return [log_probs.astype(dtype), targets, np.full(samples, steps), np.full(samples, longest)], {}


SPEC = Loss(
    name="ctc_loss",
    kind="recurrence",
    summary="Connectionist temporal classification: -log of the total probability of all alignments of the target.",
    params=(
        Tensor("log_probs", differentiable=True, doc="log-probabilities (T, N, C), or (T, C) for one sample"),
        Tensor("targets", differentiable=False,
               doc="labels (N, S) padded, or the N targets concatenated (sum of target_lengths,)"),
        Tensor("input_lengths", differentiable=False, doc="time steps used of each sample, (N,), array or list"),
        Tensor("target_lengths", differentiable=False, doc="labels of each target, (N,), array or list"),
        Int("blank", 0, doc="the blank label"),
        Reduction("mean"),
        Flag("zero_infinity", False, doc="impossible alignments (infinite losses) give zero loss and gradient"),
        Option("exact_gradient", False,
               doc="keyword-only (losscc): the exact derivative of the loss in log_probs instead of torch's"),
    ),
    mean=PerSample("target_lengths", at_least=1),
    recurrence=RECURRENCE,
    prepare=prepare,
    test_options=({"blank": 3},),  # a blank other than 0: the registry suites sample labels around it
    example=example,
    notes=(
        "'mean' divides each sample's loss by its target length (at least 1), then averages over the batch.",
        "torch's gradient (the default) is the exact gradient plus exp(log_probs) times grad_output at every "
        "t < input_length: the gradient in the logits z of loss(log_softmax(z)), derived by the compiler assuming "
        "normalised rows. exact_gradient=True returns the derivative of the loss as written.",
        "An impossible alignment gives an infinite loss and a nan gradient for t < input_length, as torch; "
        "zero_infinity=True makes both zero.",
        "Labels out of range or equal to blank raise ValueError (torch reads memory out of bounds).",
        "Only the states an alignment can pass through are computed (at step t, extended labels s up to 2t + 1 "
        "and enough steps left to finish the target): a nan in log_probs where no alignment passes leaves "
        "the loss and the other gradient elements unchanged. torch computes every state from t = 1 on, and "
        "its loss is nan for such a nan at any t from 1 on.",
        "At a log_probs element of -inf (a zero probability) torch's gradient is nan (it computes "
        "exp(lp) - exp(... - lp)); losscc returns the limit, 0. Every other element is torch's.",
    ),
)
