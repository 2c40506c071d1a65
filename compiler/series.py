"""Coefficients of the runtime's vectorizable exp and logs, fitted when the package is built.

Every log helper of the runtime reduces its argument to log(1 + f) = 2 atanh(s), s = f / (2 + f),
and writes it as fdlibm does, f - (f**2/2 - s (f**2/2 + z P(z))) with z = s**2, where

    P(z) = 2 (atanh(s) / s - 1) / z = 2/3 + 2/5 z + 2/7 z**2 + ...

Its Taylor series converges slowly at the edge of the range (z = 1/9 for |s| < 1/3): 17 terms
for float64. A Chebyshev fit of P over the range a helper sees reaches the same accuracy with
fewer terms (measured below), and each term left out is one vector FMA less per element.
"""
from __future__ import annotations

from dataclasses import dataclass

import mpmath

DIGITS = 50  # of the fit's arithmetic: far beyond float64, so the rounded coefficients are exact to it


@dataclass(frozen=True)
class AtanhFit:
    """P fitted on z in [0, z_max] with ``terms`` coefficients, lowest degree first."""
    name: str
    z_max: mpmath.mpf
    terms: int

    def coefficients(self) -> list[float]:
        with mpmath.workdps(DIGITS):
            highest_first = mpmath.chebyfit(_p, [0, self.z_max], self.terms)
            return [float(c) for c in reversed(highest_first)]

    def error_bits(self) -> float:
        """log2 of the fit's largest error relative to P, times z_max / 3 (about the size of
        s z P next to f in the result): how far below the result's own precision it is."""
        with mpmath.workdps(DIGITS):
            _, error = mpmath.chebyfit(_p, [0, self.z_max], self.terms, error=True)
            return float(mpmath.log(error / (mpmath.mpf(2) / 3) * self.z_max / 3, 2))


def _p(z: mpmath.mpf) -> mpmath.mpf:
    if z == 0:
        return mpmath.mpf(2) / 3
    s = mpmath.sqrt(z)
    return 2 * (mpmath.atanh(s) / s - 1) / z


def _reduced_z_max() -> mpmath.mpf:
    """z at the edges of log_parts' reduction, f in [sqrt(1/2) - 1, sqrt(2) - 1): |s| <= 3 - 2 sqrt(2)."""
    with mpmath.workdps(DIGITS):
        return (3 - 2 * mpmath.sqrt(2)) ** 2


# |s| < 1/3: log1p's series near 0 (-0.4 < u < 1) and log_of_unit (softplus' log(1 + e), e <= 1).
# Reduced: a log after log_parts' reduction, |s| <= 0.1716. Terms chosen where the fit's error is
# below 2**-62 (float64) and 2**-31 (float32) of the result; the Taylor series took 17 and 7
# terms on |s| < 1/3, 10 on the reduced range.
FITS = (
    AtanhFit("UNIT64", mpmath.mpf(1) / 9, 11),  # 2**-62.7 (10 terms: 2**-57.5)
    AtanhFit("REDUCED64", _reduced_z_max(), 8),  # 2**-64.8 (7 terms: 2**-57.6)
    AtanhFit("UNIT32", mpmath.mpf(1) / 9, 5),  # 2**-31.2 (4 terms: 2**-25.9)
    AtanhFit("REDUCED32", _reduced_z_max(), 4),  # 2**-35.8 (3 terms: 2**-28.4)
)


def atanh_coefficients() -> dict[str, list[float]]:
    """{name: coefficients of P, lowest degree first}, for the runtime template."""
    return {fit.name: fit.coefficients() for fit in FITS}


# exp(r) = 1 + r + r**2 Q(r) after fast_exp's reduction, |r| <= ln(2) / 2: 10 coefficients
# reach 2**-55.6 of exp(r), where the Taylor series took 12 (degree 13 in all)
EXP_TERMS = 10


def _q(r: mpmath.mpf) -> mpmath.mpf:
    """(exp(r) - 1 - r) / r**2, evaluated with digits to spare: it cancels near 0."""
    with mpmath.workdps(2 * DIGITS):
        if abs(r) < mpmath.mpf(10) ** -DIGITS:
            return mpmath.mpf(1) / 2 + r / 6
        return (mpmath.expm1(r) - r) / r**2


def exp_coefficients() -> list[float]:
    """Q's coefficients, lowest degree first: a Chebyshev fit on |r| <= ln(2) / 2."""
    with mpmath.workdps(DIGITS):
        half_ln2 = mpmath.log(2) / 2
        return [float(c) for c in reversed(mpmath.chebyfit(_q, [-half_ln2, half_ln2], EXP_TERMS))]


def exp_error_bits() -> float:
    """log2 of the fit's largest error times r**2, relative to exp(r), at the edge r = ln(2)/2."""
    with mpmath.workdps(DIGITS):
        half_ln2 = mpmath.log(2) / 2
        _, error = mpmath.chebyfit(_q, [-half_ln2, half_ln2], EXP_TERMS, error=True)
        return float(mpmath.log(error * half_ln2**2 / mpmath.exp(-half_ln2), 2))
