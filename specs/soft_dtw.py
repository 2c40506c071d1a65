from compiler.lang import (
    FEATURE,
    STATE,
    STEP,
    Eq,
    Loss,
    PerSample,
    Piecewise,
    Real,
    Recurrence,
    Reduction,
    Step,
    Tensor,
    class_sum,
    logsumexp3,
    oo,
)


def softmin(a, b, c, gamma):
    """-gamma log(exp(-a/gamma) + exp(-b/gamma) + exp(-c/gamma)): min(a, b, c) as gamma -> 0."""
    return -gamma * logsumexp3(-a / gamma, -b / gamma, -c / gamma)


# Cuturi and Blondel (2017): R[t, s] = cost(t, s) + softmin(R[t-1, s-1], R[t-1, s], R[t, s-1]),
# with R = 0 before the first pair and +inf on the other borders; the loss is R at the last pair.
RECURRENCE = Recurrence(
    predecessors=(Step(-1, -1), Step(-1, 0), Step(0, -1)),
    combine=softmin,
    emission=lambda x, y: class_sum((x[STEP, FEATURE] - y[STATE, FEATURE]) ** 2, FEATURE),
    absent=oo,
    initial=lambda s: Piecewise((0, Eq(s, -1)), (oo, True)),
    readout=lambda end: end(0),
    arrays=(("x", 0, "steps"), ("y", 0, "other")),
)


def prepare(a):
    a.reduction_cpp()
    x, y = a.array("x"), a.array("y")
    for name, array in (("x", x), ("y", y)):
        if array.ndim not in (2, 3) or array.dtype.kind != "f":
            raise rt.InvalidArgument(
                "{} must be a float array (N, T, D), or (T, D) for one sample; got {} of shape {}".format(
                    name, array.dtype, rt.fmt_shape(array.shape)))
    if x.ndim != y.ndim:
        raise rt.InvalidArgument("x and y must both be batched or both unbatched, got shapes {} and {}".format(
            rt.fmt_shape(x.shape), rt.fmt_shape(y.shape)))
    if x.ndim == 2:
        a.unbatched = True
        x, y = x[None], y[None]
    if x.shape[0] != y.shape[0]:
        raise rt.InvalidArgument("x has {} samples, y has {}".format(x.shape[0], y.shape[0]))
    if x.shape[2] != y.shape[2]:
        raise rt.InvalidArgument("x has {} features, y has {}".format(x.shape[2], y.shape[2]))
    if x.shape[1] == 0 or y.shape[1] == 0:
        raise rt.InvalidArgument("sequences must not be empty, got x {} and y {}".format(
            rt.fmt_shape(x.shape), rt.fmt_shape(y.shape)))
    if not a["gamma"] > 0.0:
        raise ValueError("gamma must be positive, got {}".format(a["gamma"]))
    a["x"], a["y"] = x, y
    samples = x.shape[0]
    a.extent(np.full(samples, x.shape[1]), np.full(samples, y.shape[1]))


def example(shape, dtype, rng):
    """Benchmark inputs of shape (N, T, U, D): N pairs of sequences of T and U steps, D features."""
    samples, steps, other, features = shape
    return [rng.standard_normal((samples, steps, features)).astype(dtype),
            rng.standard_normal((samples, other, features)).astype(dtype)], {}


SPEC = Loss(
    name="soft_dtw",
    kind="recurrence",
    summary="Soft dynamic time warping (Cuturi and Blondel, 2017) between two sequences, squared Euclidean cost.",
    params=(
        Tensor("x", differentiable=True, doc="a batch of sequences (N, T, D), or (T, D)"),
        Tensor("y", differentiable=True, doc="a batch of sequences (N, U, D), or (U, D)"),
        Real("gamma", 1.0, doc="smoothing: the soft minimum tends to the minimum as gamma goes to 0"),
        Reduction("mean"),
    ),
    mean=PerSample(),
    recurrence=RECURRENCE,
    prepare=prepare,
    torch_name="none",  # no torch counterpart
    example=example,
    notes=(
        "No torch counterpart: tested against a plain NumPy implementation of the recurrence and "
        "finite differences.",
        "'mean' averages over the batch.",
    ),
)
