"""``auto``: pick a method and its parameters per series, from the data alone.

Two-fold cross-validation does both jobs. Each candidate fits the even samples and its
smoothed signal, interpolated by a 4-point Lagrange stencil, predicts the odd samples (and
the other way round). For a candidate with a smoothing parameter (``TUNINGS``: spline
smoothing, savgol window, tvr alpha) this is done over a grid of values;
the smoothest value whose prediction error is within ``SLACK`` standard errors of the least
(the one-standard-error rule) is kept, and the full series gets it times a factor measured
against the truth (benchmarks/auto_ratio.py): the half-to-full transfer and the extra
smoothing that derivatives need over the signal. Candidates without a tuning (spectral,
kalman, lowess) use their own automatic choice, on each half for the cross-validation and
on the whole series for the result (recorded). The candidate with the least prediction
error wins the series; one must beat an earlier (simpler) candidate in ``CANDIDATES`` by
``margin`` (relative) to be picked over it.

The spline's smoothing is then blended (weighted geometric mean, ``ML_WEIGHT``) with the
maximum-likelihood smoothing of the same septic smoother in state-space form (``kalman``'s
choice, adjusted for the derivative order): two estimates of the same quantity whose errors
are largely independent. The blend is shifted by the estimated noise-to-range ratio and the
length (``ML_SHIFT``): both estimates target the signal, and the derivative's optimum lies
further above them the lower the noise and the longer the series. Chosen smoothings are
rounded to ``RESOLUTION`` decades so that a batch needs few sets of spline gains.

The spline is the septic one (degree 7: it penalises f'''', so cubic trends cost nothing)
with corrected ends; it replaced the quintic on 2026-11-27 (the measurements further below
that name the quintic are from before). The rule was refitted for it with
benchmarks/auto_fit.py (ten signal families at 0.1-10 % noise, 101-401 samples, 6 series
per case; fitted on one set of draws, scored on another): geometric mean RMSE of the spline's
derivatives on the held-out draws 0.0557 (quintic, its rule refitted the same way) ->
0.0483; exp 0.055 -> 0.043, cubic 0.026 -> 0.012, damped oscillator 0.059 -> 0.053, the
Gaussian bump equal, the tanh step worse (0.082 -> 0.090); the rule weights the ML value
more (0.80 against 0.35) and no longer needs ``POLY_GAP`` (polynomial trends took the
largest smoothing; for the septic: gap 3 / 4 / none 1.1454 / 1.1412 / 1.1373 of the best
common smoothing). On
benchmarks/auto_ratio.py (geometric means, interior / whole range), quintic -> septic:
101 samples order 1 1.134 / 1.343 -> 1.106 / 1.334, order 2 1.326 / 1.546 -> 1.290 /
1.573; 201 samples 1.124 / 1.272 -> 1.042 / 1.217 and 1.338 / 1.580 -> 1.197 / 1.464; 401
samples 1.099 / 1.176 -> 0.947 / 1.018 and 1.259 / 1.523 -> 1.018 / 1.219. Cases within
target (1.25x / 1.5x): interior 25+22 -> 24+24 (101), 24+21 -> 26+26 (201), 25+21 -> 29+29
(401); whole range 17+19 -> 15+16, 19+18 -> 17+18, 24+20 -> 23+22. Against the peers (--peers,
5 draws per case): within target interior 19+20 -> 21+20, whole range 16+18 -> 19+18 of
24+24. Exp and cubic trends gain most, then the damped oscillator inside and Black-Scholes
order 1; exp order 2 at 1 % (201 samples 1.14 -> 1.38), the tanh step and the damped
oscillator over the whole range at 3-5 % lose.

Long series (measured 2026-11-27): the spline's smoothing is in sample units, and the
smoothing a signal needs grows with the number of samples that resolve it (the kernel
width in samples to the power 8). The CV grid stopped at 10**9.5 on the half series and the
result at 10**13, bounds set on the benchmark's 101-401 samples, so on longer series every
non-periodic pick was heavily undersmoothed: against the spline's own choice (septic,
corrected ends, maximum likelihood) on the same series, auto_ratio's eight signals at 1 and
5 % noise, orders 1 and 2, 1,000 and 4,000 samples, 4 series per case, auto's interior
RMSE was 2.90x the spline's (geometric mean of 64 cases), up to 191x (exp, 4,000 samples,
5 %, order 2: 6.6 against 0.077). Both bounds now rise as (n / ``REF_N``)**8 above 401
samples (``Tuning.grows``), unchanged below: 0.77x the spline's, at most 1.8x (the tanh
step, 1 %), and identical results on the published benchmark. The CV grid keeps its 22
values over the wider range (steps of 0.65 decades at 1,000 samples, 1.34 at 65,536):
benchmarks/long_series.py (4 series per case, 32 cases per length) gives auto over the
spline 0.79 / 0.81 / 0.71 / 0.61 at 1,000 / 4,000 / 16,384 / 65,536 samples with 0.5-decade
steps and 0.79 / 0.82 / 0.73 / 0.62 with 22 values, and auto on 64 series of 65,536 samples
321 -> 153 ms per series.

What was picked is returned by ``choose``: ``method`` (an integer code, the index into
``CANDIDATES``) and each tuned candidate's parameter under ``"<method>.<parameter>"``
(arrays of shape ``y.shape[:-1]``); ``apply`` runs each picked method on its own series
with those values. Series whose least noise estimate over difference orders 4-12
(``noise_floor``) is zero, relative to their range, take ``finite_difference`` with the
highest accuracy their length allows (``clean_accuracy``, recorded as
``finite_difference.accuracy``; 4 for the others): nothing to smooth, so truncation is the
only error; those for which spectral chose a periodic extension take spectral instead
(exact there).

On irregular x spectral competes as well (least-squares harmonics, see ``_lsspectrum``),
with the same extension, bonus and wrap test; above its ``irregular_max_samples`` it is
left out. On benchmarks/peers.py's irregular sin (warped grid, 201 samples, five draws per case)
auto's ratio to the best tuned peer went from 0.71-1.52 to 0.11-0.75 (interior) and from
0.75-1.70 to 0.06-1.00 (whole range) at 1-10 % noise, orders 1 and 2; on the non-periodic
series of the same grid (exp, sin over 3/4 period, 20 series per case) spectral was picked
for at most 1 in 20.

Where spectral chose a periodic extension for a series (it continues smoothly across the
wrap, see spectral's notes), its cross-validation error counts ``PERIODIC_BONUS`` less:
the cross-validation scores the signal, away from the ends, and sees neither the spline's
end errors in the derivative nor the periodic FFT's lack of them. Spectral's own wrap test
fits quadratics on either side, which oscillating signals defeat (a damped oscillation or
two tones over a range that is not a period pass it at any noise), so the bonus also needs
the spline's fit to continue across the wrap (``wrap_z``: value and slope at the two ends
within ``WRAP_Z`` standard errors). Spectral's halves are cross-validated with the whole
series' extension where it fits them exactly (``half_extension``), each half with its own
cutoff: a half's own choice of extension is a coin toss more often than the whole's (on
the two-frequency period at 1 % noise, order 2, the odd half of 2 of 5 draws took the
reflection and the spline won; 5-draw peers ratio 2.82 -> 0.83, others unchanged;
auto_ratio 101 samples order 1 1.144 -> 1.134, 201 samples unchanged).

Measured (benchmarks/auto_ratio.py: sin, exp, two-frequency, Black-Scholes call, damped
oscillator, irregularly sampled sin, tanh step and cubic at 1, 3, 5 and 10 % noise, 10
series per case; the RMSE over that of the best method and parameter chosen in hindsight
with the truth, as geometric means over the 32 cases per order; interior / whole range),
before -> after the shifted blend, ``POLY_GAP``, the spline's wrap test and ``FD_Z``:

- 101 samples: order 1 1.209 / 1.487 -> 1.144 / 1.367 (within 1.25x: 20 -> 25 of 32),
  order 2 1.466 / 1.674 -> 1.326 / 1.546 (within 1.5x: 17 -> 22);
- 201 samples: order 1 1.191 / 1.413 -> 1.124 / 1.271 (20 -> 24), order 2 1.447 / 1.712
  -> 1.338 / 1.580 (17 -> 21);
- 401 samples: order 1 1.155 / 1.306 -> 1.099 / 1.176 (23 -> 25), order 2 1.327 / 1.607
  -> 1.259 / 1.523 (18 -> 21).

On the first six signals alone (the peers' kinds): 101 samples 1.235 / 1.526 -> 1.152 /
1.392 and 1.431 / 1.607 -> 1.268 / 1.472; 201 samples 1.210 / 1.436 -> 1.137 / 1.280 and
1.350 / 1.539 -> 1.255 / 1.449; 401 samples 1.177 / 1.363 -> 1.103 / 1.195 and 1.284 /
1.397 -> 1.194 / 1.330. Periodic sin is unchanged; the damped oscillator gains most (201
samples, order 1: 1.58 / 2.35 -> 1.08-1.14 / 1.14-1.4), then the two-frequency signal
and cubic trends; Black-Scholes and tanh move by a few per cent either way.

The blend's constants (``ML_WEIGHT``, ``ML_SHIFT``, ``NSR_SLOPE``, ``N_SLOPE``,
``POLY_GAP``) were fitted on other noise draws: per series, the spline's interior and whole-
range RMSE on a 0.1-decade smoothing grid, ten signal families (the eight above, a Gaussian
bump and a chirp) at 0.1-10 % noise and 101-401 samples, each family and noise band weighted
alike. Spline alone, over its best smoothing per case (1 = the best common smoothing in
hindsight): 1.350 -> 1.150 on the fitted draws, 1.151 -> 1.122 on held-out draws of the
first six signals. A first fit on those six signals alone (``ML_WEIGHT`` 0.8, shift 0.15 /
0.10, slopes -0.85 and 0.4, no ``POLY_GAP``) did better on them (1.092 on held-out draws;
auto_ratio 201 samples 1.129 / 1.229 and 1.232 / 1.454 on the six) but worse on the families
it had not seen: tanh 1.18 -> 1.24 (1-10 %) and 1.16 -> 1.65 (0.1-0.3 %), cubic 1.86 ->
2.27, all ten 1.350 -> 1.253 where the fit kept here gets 1.150; left out one family at a
time, the fit kept here (with a smooth switch in place of ``POLY_GAP``) scored 1.156 on the
family left out, the first 1.253, none 1.350. It is still the Black-Scholes call and tanh at
low noise that want less smoothing than the rule gives (roughness concentrated in one
place). The Black-Scholes call's second derivative is best (in hindsight) from the natural
cubic spline, whose end condition (f'' = 0) its Gamma nearly meets at both ends: 0.141
against the quintic's best 0.213 at 5 % noise, 201 samples; on exp the same spline is 2x
worse than the quintic, and the cross-validation of the signal cannot tell the two apart.
Measured again against the septic spline with corrected ends (2026-11-27; each spline at
its best common smoothing in hindsight, 0.25-decade grid, auto_fit's ten families, 201
samples, 6 series per case, 1 / 3 / 5 / 10 % noise; natural cubic over septic, interior):
the cubic is ahead only on the Black-Scholes call (order 2: 0.96 / 0.82 / 0.74 / 0.42,
order 1 0.79 at 10 %) and at 10 % on tanh and irregular sin (order 2: 0.90, 0.98); it is
behind in the other cases (1.2-2.4x on sin, damped, bump, two-frequency and chirp, up to
1.3x on tanh and 2.1x on irregular sin, 1.2-3.2x on exp, 2-11x on the cubic trend). Over
the whole range its natural ends do better at 5 and 10 % noise in order 2 (0.28-0.47 on
Black-Scholes, 0.56-0.72 on tanh and irregular sin, 0.80-1.00 on sin, damped and
two-frequency) and worse on exp, chirp and the cubic trend.
On the peers' Black-Scholes call the septic's own best leaves order 2 at 1.27x (5 %) and
1.72x (10 %) of the oracle-tuned peer (derivative's Kalman, a cubic spline): auto's misses
there are the choice of spline, which nothing measured from the signal has told apart.

The spline's wrap test took the damped oscillator at 201 samples from 1.3-2.0x to 0.94-1.34x
at first (spectral, with its bonus, had been picked on 10-90 % of its series). Its standard
errors come from noise through the spline with its end correction active (a large cubic
added); from noise alone the correction shrinks away and the errors came out too small: 3-11
% of periodic sin series failed at ``WRAP_Z`` 3 (one spline pick on sin order 2 costs 2.6x),
and one in ten at 101 samples, 10 % noise, even at 6 (z = 6.3, 5.3 with the fix). ``WRAP_Z``
5.5 keeps every sin series of the benchmark on spectral; 4 took the damped oscillator at 10
% noise further (201 samples 1.42 / 1.34 against 1.37 / 1.90 at 5.5, order 1) at that cost
on sin. Averaging the spline's and spectral's derivatives where their cross-validation
errors are within 10-50 % was tried: two-frequency 0.75-1.03x, but exp and Black-Scholes
1.0-2.4x (spectral's reflection is poor there). Against the peers (--peers: the published
signals, one series per case, best oracle-tuned peer; interior / whole range): order 1 0.92
/ 0.90 -> 0.91 / 0.90, order 2 0.89 / 0.78 -> 0.89 / 0.82 (one noise draw per case: single
series move either way).

Earlier measurements (the benchmark's first version: sin / exp / two-frequency / Black-
Scholes at 1-10 % noise, 201 and 401 samples): before spectral's periodic extensions and the
bonus, peers 1.53x / 2.11x (order 1) and 2.15x / 3.26x (order 2). The bonus alone (0.5
against 0, before spectral counted its lowest bins): peers order 1 1.18x / 1.40x -> 1.02x /
1.11x, order 2 1.53x / 1.82x -> 1.34x / 1.45x. Its cost where spectral takes a periodic
extension by mistake (10 % noise hiding a kink or jump at the wrap: sin over half a period,
sin plus a slope; 20 series of 101 and 401 samples): RMSE 1.2-1.55x (interior) and up to
1.65x (whole range) of auto without it; on periodic series at that noise it gains 1.3-3x.
The misses left are the two-frequency signal that is not periodic (spline picked; spectral's
own cutoff is within 1.1x of the best at 1 % noise but the cross-validation cannot tell),
Black-Scholes Gamma (a fit that needs different smoothing in different parts of the series)
and, less than before, the ends of spline picks at high noise.

The spline runs with ``ends='corrected'`` (Speckman's boundary correction, shrunk per
series by its t statistic; see ``_statespace.end_correction``): the natural spline's
vanishing high derivatives at the ends bias the derivative there, and more so the more it
smooths. Measured against natural ends: peers order 1 0.99x / 1.07x -> 0.92x / 0.90x,
order 2 1.07x / 1.13x -> 0.89x / 0.78x; 201 samples 1.29x / 1.57x -> 1.26x / 1.44x and
1.55x / 2.05x -> 1.39x / 1.63x; 401 samples 1.11x / 1.26x -> 1.11x / 1.25x and 1.33x /
1.67x -> 1.32x / 1.53x. Unshrunk, the correction did as well on the peers (0.91x / 0.91x,
0.84x / 0.78x) but worse at 401 samples (1.15x / 1.35x and 1.40x / 1.67x; exp order 2 at 10 %
1.29x -> 1.92x: its variance where the smoothing is heaviest). Shrunk, exp and Black-Scholes at 401
samples still lose a little in most of their 12 cases (interior 2-10 %; exp order 2 at
10 % 1.29x -> 1.41x, Black-Scholes order 1 at 3 % whole range 1.76x -> 2.03x) while sin
gains there. Global polynomial detrending and Stein's positive-part shrinkage were tried
and did worse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numba
import numpy as np
from pydantic import Field, field_validator

from ._noise import noise_sigma
from ._stencil import fornberg_weights, run_rows
from ._xp import asarray_like, to_numpy
from .api import uniform_step
from .registry import MethodParams, MethodSpec, Output, get_method, register, registered
from .spectral import smoothed_with_extension

# every method auto may use, in order of preference on a tie (simplest first); the integer
# code auto reports is the index into this tuple
CANDIDATES = ("finite_difference", "savgol", "spline", "kalman", "lowess", "spectral", "tvr")
# candidates used when ``candidates`` is not given (those of them that are registered).
# Measured with benchmarks/auto_ratio.py: adding savgol made auto worse (it predicts the
# signal as well as spline does, so it wins the cross-validation, but its derivatives are
# worse); kalman was never picked over spline. Both stay available through ``candidates``.
# spectral competes with its own derivative-targeted cutoff (its ``choose``), not a cutoff
# tuned by cross-validation: tuned, it was 2.5x (order 1) and 3.3x (order 2) off the best
# on its own and made auto worse where it was picked; with its own cutoff it is picked
# rarely, mostly on the two-frequency signal, where it is the best method.
DEFAULT_CANDIDATES = ("finite_difference", "spline", "spectral")
# the spline's smoothing is a weighted geometric mean of its cross-validated value and the
# maximum-likelihood value of the same spline in state-space form (``ml_smoothing``): two
# estimates with independent errors. Fitted jointly with the shift below by
# benchmarks/auto_fit.py (module notes): 0.80 (0.35 for the quintic spline used before)
ML_WEIGHT = 0.80
# ... and then shifted (decades) by ``ML_SHIFT[order] + NSR_SLOPE * log10(nsr / 0.03) +
# N_SLOPE * log10(n / 201)``, nsr the estimated noise over the series' range (clipped to
# ``NSR_RANGE``) and n its length (clipped to ``N_RANGE``): the truth-optimal smoothing for
# the derivative sits above both estimates at low noise and long series, below them at high
# noise and short series (see the module notes for what was measured)
ML_SHIFT = {1: -0.044, 2: -0.052}
NSR_SLOPE = -0.711
N_SLOPE = 0.436
# kalman's model that is the spline of each degree in state-space form (``ml_smoothing``)
ML_MODEL = {3: "cv", 5: "ca", 7: "cj"}
NSR_RANGE = (1e-3, 0.3)
N_RANGE = (101, 2000)
# chosen spline smoothings are rounded to this many decades, so that a batch needs only a
# few sets of gains when the spline is applied (one per distinct value)
RESOLUTION = 0.05
# standard errors of cross-validation slack towards smoother fits (see ``tune``)
SLACK = 0.5
# spectral's cross-validation error is reduced by this fraction on series where it chose a
# periodic extension (see the module notes; 0.25 gave half the gain, 0.9 the same as 0.5)
PERIODIC_BONUS = 0.5
# spectral's periodic extension keeps its bonus only where the spline's fit (its chosen
# smoothing) continues across the wrap: value and slope at either end agree within WRAP_Z
# standard errors (from WRAP_DRAWS unit-noise series through the same spline); elsewhere
# spectral competes without the bonus (see the module notes; WRAP_LESS: decades less
# smoothing for the test than the spline's own, 1 and 2 lost the damped oscillator's power)
WRAP_Z = 5.5
WRAP_DRAWS = 32
WRAP_LESS = 0.0
# noise below this fraction of a series' range counts as none (rounding, not measurement)
NOISE_FREE = 1e-9
# difference orders whose noise estimates decide "noise-free": on exact smooth data the
# estimate falls like h**k towards rounding (1e-17..1e-12 of the range at k = 12 on the
# peers' signals), on noisy data it stays at sigma for every k
CLEAN_ORDERS = (4, 6, 8, 10, 12)
# standard errors of cross-validation advantage finite differences need over the smoothers
# on noisy series (see ``_choose``; measured: one series in 1440 of auto_ratio's noisy ones
# took them, at 7x the error of the best for order 2, and none does now)
FD_Z = 2.0
# accuracy of the finite-difference candidate on noisy series (its one-sided ends amplify
# noise more at higher accuracy); noise-free series get ``clean_accuracy``
FD_ACCURACY = 4


class AutoParams(MethodParams):
    """Parameters of ``auto``."""

    candidates: tuple[str, ...] | None = Field(
        None,
        description="methods to choose from, by name (None: "
        + ", ".join(DEFAULT_CANDIDATES)
        + ", those registered)",
    )
    margin: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="relative cross-validation advantage a candidate needs over an earlier "
        "(simpler) one in the list to be picked",
    )

    @field_validator("candidates")
    @classmethod
    def _known(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("must name at least one method")
        bad = [m for m in v if m not in CANDIDATES]
        if bad:
            raise ValueError(f"unknown candidate(s) {bad}; allowed: {', '.join(CANDIDATES)}")
        return tuple(dict.fromkeys(v))


def candidate_names(params: AutoParams, order: int, x: np.ndarray) -> list[str]:
    """The registered candidates that can give ``order`` on this x, in preference order."""
    names = params.candidates if params.candidates is not None else DEFAULT_CANDIDATES
    reg = registered()
    uniform = uniform_step(x) is not None
    out = []
    for name in CANDIDATES:
        if name not in names or name not in reg:
            continue
        spec = reg[name]
        if order not in spec.orders or (not uniform and not spec.takes_irregular(x.shape[0])):
            continue
        out.append(name)
    if not out:
        raise ValueError(
            f"method 'auto': no candidate can give order {order} on this x; candidates: "
            f"{', '.join(names)}"
        )
    return out


@dataclass(frozen=True)
class Tuning:
    """How auto tunes one candidate: its smoothing parameter, a grid, and a shift.

    ``grid(sigma, n_half)`` gives the values tried on the half series of ``n_half`` samples
    (rows share the grid; an array (g, rows)). The value that predicts the other half best
    is the signal-optimal one for half the samples; the full series gets it times
    ``factor[order]`` (the half-to-full transfer and the extra smoothing derivatives need,
    measured together against the truth in benchmarks/auto_ratio.py), within ``lo`` and
    :meth:`top` for its length.
    """

    param: str
    grid: Callable[[np.ndarray, int], np.ndarray]
    factor: dict[int, float]
    fixed: dict[str, Any] = field(default_factory=dict)
    lo: float = 0.0
    hi: float = np.inf
    integer_odd: bool = False
    # +1 when a larger value smooths more, -1 when a smaller one does (a cutoff)
    direction: int = 1
    # decades that ``hi`` (and the grid's top) rise per decade of length above ``REF_N``:
    # a parameter in sample units (the spline's smoothing) must grow with n to keep the
    # same resolution of the signal (0: a fixed bound)
    grows: float = 0.0
    # the method's derivative of order 0 is exactly its smoothed signal: the halves are fitted
    # as order 0 without the smoothed output (one result per half instead of two; the spline
    # with corrected ends also smooths and corrects once instead of twice)
    fit_is_order0: bool = False

    def top(self, n: int) -> float:
        """The largest value for a full series of n samples."""
        return self.hi * (max(n / REF_N, 1.0) ** self.grows)


# the length the tunings' bounds were set for (the published benchmarks' longest series);
# longer series raise the bounds of a tuning that ``grows``
REF_N = 401
# the septic spline's smoothing goes as the kernel width (in samples) to the power 8: the
# decades its bounds rise per decade of length (``Tuning.grows``, :func:`_spline_grid`)
SPLINE_GROWS = 8.0


def _spline_grid(sigma: np.ndarray, n_half: int) -> np.ndarray:
    """Half-series smoothings: up to a kernel half width of ~15 samples (10**9.5) on halves
    of up to REF_N // 2 samples, the same fraction of longer halves (septic: the smoothing
    goes as the width**8). Always 22 values (0.5 decades apart up to REF_N samples, wider
    steps beyond): each is a spline fit of both halves, the bulk of auto's time on long
    series, and the cross-validated value carries only 1 - ``ML_WEIGHT`` of the choice."""
    top = 9.5 + SPLINE_GROWS * np.log10(max(n_half / (REF_N // 2), 1.0))
    step = max(0.5, (top + 1.0) / 21.0)
    return np.tile(10.0 ** np.arange(-1.0, top + 0.01, step)[:, None], (1, sigma.size))


TUNINGS: dict[str, Tuning] = {
    "spline": Tuning(
        "smoothing",
        # the full series gets 2**7 (spacing halved) times more than its half, and more for
        # derivatives; what the derivative needs beyond that is fitted in ML_SHIFT
        _spline_grid,
        {1: 10**1.96, 2: 10**2.11},
        fixed={"degree": 7, "ends": "corrected"},
        # the septic spline reproduces a cubic to ~1e-12 at smoothings up to 1e16 (measured
        # on the benchmark's lengths); on longer series the bound rises with the width**8
        hi=10**13,
        grows=SPLINE_GROWS,
        fit_is_order0=True,
    ),
    "savgol": Tuning(
        "window",
        lambda sigma, n_half: np.tile(
            np.array([7, 9, 11, 15, 19, 25, 31, 41, 51, 65, 81, 101])[:, None], (1, sigma.size)
        ).astype(np.float64),
        {1: 10**0.23, 2: 10**0.31},
        fixed={"polyorder": 4},
        lo=7.0,
        integer_odd=True,
        fit_is_order0=True,
    ),
    "tvr": Tuning(
        "alpha",
        lambda sigma, n_half: np.geomspace(1e-1, 1e6, 15)[:, None] * sigma[None, :],
        {1: 10**0.67, 2: 10**1.4},
    ),
}


def noise_floor(y2: np.ndarray, x: np.ndarray, sigma4: np.ndarray) -> np.ndarray:
    """Per row (rows,): the least noise estimate over difference orders ``CLEAN_ORDERS``.

    ``sigma4`` is the order-4 estimate already computed. A smooth signal sampled coarsely
    leaves a truncation term in the order-4 estimate (1e-8 of the range for exp on 101
    samples) that higher orders remove; noise does not go away with the order.
    """
    est = [sigma4] + [noise_sigma(y2, np, k=k, x=x) for k in CLEAN_ORDERS if k != 4]
    return np.min(np.stack(est), axis=0)


def clean_accuracy(order: int, n: int) -> int:
    """Finite-difference accuracy for noise-free series of n samples: the highest that fits.

    Measured with finite_difference on the peers' noise-free signals (benchmarks/peers.py):
    accuracy 8 instead of 4 takes exp, Black-Scholes, the damped oscillator and irregular sin
    from 1e-9..1e-6 to 1e-14..1e-11 (relative RMSE); series whose ``noise_floor`` is below
    ``NOISE_FREE`` of their range get it.
    """
    fd = get_method("finite_difference")
    for acc in (8, 6, 4, 2):
        if fd.min_samples(order, fd.make_params({"accuracy": acc})) <= n:
            return acc
    return 2


def _cand_params(name: str) -> MethodParams:
    spec = get_method(name)
    if name == "finite_difference":
        return spec.make_params({"accuracy": FD_ACCURACY})
    tune = TUNINGS.get(name)
    return spec.make_params(tune.fixed if tune is not None else {})


def _interp_weights(xs: np.ndarray, xo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4-point Lagrange weights predicting points xo from xs: (kept, starts, weights (k, 4))."""
    j = np.searchsorted(xs, xo)
    keep = np.flatnonzero((j >= 2) & (j <= xs.shape[0] - 2))
    start = j[keep] - 2
    nodes = xs[start[:, None] + np.arange(4)]
    return keep, start, fornberg_weights(xo[keep], nodes, 0)


class _Halves:
    """The two-fold split of a batch: fit on one half, predict the other, both ways."""

    def __init__(self, y2: np.ndarray, x: np.ndarray):
        self.y2 = y2
        self.parts = []
        for part in (0, 1):
            xs, xo = x[part::2], x[1 - part :: 2]
            keep, start, w = _interp_weights(xs, xo)
            held = np.ascontiguousarray(y2[:, 1 - part :: 2][:, keep])
            yh = np.ascontiguousarray(y2[:, part::2])
            self.parts.append((yh, xs, start, w, held))

    def error(self, smooth: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
        """Summed squared prediction error (rows,) of ``smooth(y_half, x_half) -> fit``."""
        err = np.zeros(self.y2.shape[0])
        for yh, xs, start, w, held in self.parts:
            s = np.ascontiguousarray(smooth(yh, xs))
            run_rows(_prediction_sse, s, err, start, w, row_args=(held,))
        return err


@numba.njit(nogil=True, cache=True)
def _prediction_sse(s, held, start, w, out):  # pragma: no cover - compiled
    """out[r] += sum over k of (sum_j w[k, j] s[r, start[k] + j] - held[r, k])**2: the
    4-point predictions of a held-out half (rows, K) from a fitted half s (rows, m), their
    squared errors summed in one pass (no prediction array)."""
    for r in range(s.shape[0]):
        acc = 0.0
        for k in range(start.shape[0]):
            a = start[k]
            p = s[r, a] * w[k, 0]
            p += s[r, a + 1] * w[k, 1]
            p += s[r, a + 2] * w[k, 2]
            p += s[r, a + 3] * w[k, 3]
            d = p - held[r, k]
            acc += d * d
        out[r] += acc


def _refine(
    values: np.ndarray, score: np.ndarray, direction: int, slack: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the smoothest value whose score is within ``slack`` (relative) of the least.

    score and values are (g, rows) with values increasing along g; ``direction`` +1 means
    larger values smooth more. Where the smoothest acceptable value is the minimum itself,
    a parabola through it and its neighbours (in log value) refines it. Returns the value
    and the least score per row.
    """
    g, r = score.shape
    low = np.min(score, axis=0)
    ok = score <= low * (1.0 + slack)
    if direction > 0:
        best = g - 1 - np.argmax(ok[::-1], axis=0)
    else:
        best = np.argmax(ok, axis=0)
    cols = np.arange(r)
    lv = np.log(values)
    i = np.clip(best, 1, g - 2)
    s0, s1, s2 = score[i - 1, cols], score[i, cols], score[i + 1, cols]
    den = s0 - 2.0 * s1 + s2
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(den > 0, 0.5 * (s0 - s2) / den, 0.0)
    step = lv[i + 1, cols] - lv[i, cols]
    at = np.where(best == i, lv[i, cols] + np.clip(off, -1.0, 1.0) * step, lv[best, cols])
    at = np.where(score[best, cols] <= low, at, lv[best, cols])
    return np.exp(at), low


def tune(
    name: str,
    halves: _Halves,
    x: np.ndarray,
    sigma: np.ndarray,
    order: int,
    half_fit: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(CV error (rows,), parameter for the full series (rows,) or None) of one candidate.

    ``half_fit(y_half, x_half) -> fit``, for a candidate without a tuning, replaces its own
    choice and smoothing of the halves.
    """
    spec = get_method(name)
    p = _cand_params(name)
    tn = TUNINGS.get(name)
    if tn is None or not spec.has_smoothed:
        if not spec.has_smoothed:  # finite differences keep the data as they are
            return halves.error(lambda yh, xs: yh), None
        if half_fit is not None:
            return halves.error(half_fit), None

        def smooth(yh: np.ndarray, xs: np.ndarray) -> np.ndarray:
            own = spec.choose(yh, xs, order, p, np) if spec.choose else {}
            return np.asarray(to_numpy(spec.apply(yh, xs, order, p, own, np, True).smoothed))

        return halves.error(smooth), None
    n_half = halves.parts[1][0].shape[-1]
    values = tn.grid(sigma, n_half)
    if tn.integer_odd:  # windows: only those that fit the half series
        values = values[values[:, 0] <= n_half]
    score = np.empty_like(values)
    for k in range(values.shape[0]):
        v = values[k].astype(np.int64) if tn.integer_odd else values[k]

        def smooth(yh: np.ndarray, xs: np.ndarray, v: np.ndarray = v) -> np.ndarray:
            if tn.fit_is_order0:
                out = spec.apply(yh, xs, 0, p, {tn.param: v}, np, False)
                return np.asarray(to_numpy(out.derivative))
            out = spec.apply(yh, xs, order, p, {tn.param: v}, np, True)
            return np.asarray(to_numpy(out.smoothed))

        score[k] = halves.error(smooth)
    score = np.where(np.isfinite(score), score, np.inf)
    # the one-standard-error rule: the smoothest value whose prediction error is within
    # SLACK standard errors of the least (a mean of m squared Gaussian residuals has a
    # relative standard error of sqrt(2 / m)), as derivatives need more smoothing
    m = sum(part[4].shape[1] for part in halves.parts)
    best, err = _refine(
        values, score, tn.direction, np.full(score.shape[1], SLACK * np.sqrt(2.0 / m))
    )
    full = np.clip(best * tn.factor[order], tn.lo, tn.top(x.shape[0]))
    if tn.integer_odd:
        n = x.shape[0]
        top = n if n % 2 else n - 1
        full = np.clip(2 * np.floor(full / 2) + 1, tn.lo, top)
    return err, full


def ml_smoothing(y2: np.ndarray, x: np.ndarray, order: int) -> np.ndarray:
    """log10 spline smoothing (rows,) by maximum likelihood: ``kalman``'s choice for the
    state-space form of the same spline (``ML_MODEL``), adjusted for the derivative order
    there; NaN where kalman cannot give one."""
    spec = get_method("kalman")
    degree = TUNINGS["spline"].fixed["degree"]
    ch = spec.choose(y2, x, order, spec.make_params({"model": ML_MODEL[degree]}), np)
    step = (x[-1] - x[0]) / (x.shape[0] - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ml = np.log10(ch["measurement_noise"] / (ch["process_noise"] * step**degree))
    return np.where(np.isfinite(ml), ml, np.nan)


def _blend_ml(
    value: np.ndarray, y2: np.ndarray, x: np.ndarray, order: int, nsr: np.ndarray
) -> np.ndarray:
    """Spline smoothing (rows,): the CV value blended with the ML value (``ml_smoothing``).

    The blend is shifted by the noise-to-range ratio ``nsr`` (rows,) and the length (see
    ``ML_SHIFT``). The result is rounded to ``RESOLUTION`` decades (few distinct values, few
    gains).
    """
    reg = registered()
    lv = np.log10(value)
    if "kalman" in reg and order in reg["kalman"].orders and ML_WEIGHT > 0:
        ml = ml_smoothing(y2, x, order)
        ok = np.isfinite(ml)
        lnsr = np.log10(np.clip(np.nan_to_num(nsr), *NSR_RANGE) / 0.03)
        shift = (
            ML_SHIFT[order]
            + NSR_SLOPE * lnsr
            + N_SLOPE * np.log10(np.clip(x.shape[0], *N_RANGE) / 201.0)
        )
        ml = np.where(ok, ml, 0.0)
        blend = (1.0 - ML_WEIGHT) * lv + ML_WEIGHT * ml + shift
        lv = np.where(ok, blend, lv)
    lv = np.round(lv / RESOLUTION) * RESOLUTION
    tn = TUNINGS["spline"]
    return np.clip(10.0**lv, tn.lo, tn.top(x.shape[0]))


def wrap_z(
    y2: np.ndarray, x: np.ndarray, smoothing: np.ndarray, sigma: np.ndarray, closed: np.ndarray
) -> np.ndarray:
    """Per row (rows,): how far the spline's fit is from continuing across the wrap.

    The spline (``smoothing`` per row) gives the value and slope at both ends; for a period
    of n steps ("periodic") the value after the last sample is its value plus one step of
    its slope, for n - 1 steps (``closed``) the last sample is the first. The two
    differences are divided by their standard errors under the noise ``sigma`` (rows,),
    measured by passing ``WRAP_DRAWS`` fixed unit-noise series through the same spline, one
    set per distinct smoothing (a few, see ``RESOLUTION``); the larger ratio is returned.
    """
    spec = get_method("spline")
    p = _cand_params("spline")
    h = (x[-1] - x[0]) / (x.shape[0] - 1)

    def gaps(y: np.ndarray, s: np.ndarray, cl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = spec.apply(y, x, 1, p, {"smoothing": s}, np, True)
        f, d = np.asarray(to_numpy(out.smoothed)), np.asarray(to_numpy(out.derivative))
        end = np.where(cl, f[:, -1], f[:, -1] + h * d[:, -1])
        return end - f[:, 0], d[:, -1] - d[:, 0]

    g0, g1 = gaps(y2, smoothing, closed)
    noise = np.random.default_rng(0).standard_normal((WRAP_DRAWS, x.shape[0]))
    # plus a large cubic, which the corrected spline recovers exactly: its end correction
    # then runs unshrunk, as on a signal with ends to correct (on noise alone it shrinks
    # away and the spread would be too small); the cubic's own gaps are the draws' mean
    u = 2.0 * (x - x[0]) / (x[-1] - x[0]) - 1.0
    noise = noise + 1e3 * u**3
    s0, s1 = np.empty_like(g0), np.empty_like(g1)
    for value in np.unique(smoothing):
        rows = smoothing == value
        for cl in (False, True):
            sel = rows & (closed == cl)
            if sel.any():
                e0, e1 = gaps(noise, np.full(WRAP_DRAWS, value), np.full(WRAP_DRAWS, cl))
                s0[sel] = np.std(e0, ddof=1) * sigma[sel]
                s1[sel] = np.std(e1, ddof=1) * sigma[sel]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.maximum(np.abs(g0) / s0, np.abs(g1) / s1)
    return np.where(np.isfinite(z), z, 0.0)


def half_extension(extension: np.ndarray, part: int, n: int) -> np.ndarray:
    """Spectral extension codes (rows,) for half ``part`` (0: even samples, 1: odd) of series
    of n samples whose whole-series extension is ``extension``; -1 where none fits exactly.

    The reflection stays the reflection. A period of n steps ("periodic") is n / 2 steps of
    either half when n is even; a period of n - 1 steps ("closed") is (n - 1) / 2 half steps
    when n is odd: the even samples then end on the sample that repeats the first (closed),
    the odd samples are one period without it (periodic). Other periods are no whole number
    of half steps.
    """
    ext = np.asarray(to_numpy(extension), dtype=np.int64).reshape(-1)
    out = np.where(ext == 0, 0, -1)
    if n % 2 == 0:
        out = np.where(ext == 1, 1, out)
    else:
        out = np.where(ext == 2, 2 if part == 0 else 1, out)
    return out


def _spectral_halves(
    extension: np.ndarray, x: np.ndarray, order: int
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Spectral's fit of each half with the whole series' extension (``half_extension``) and
    its own cutoff for it: a half's own choice of extension can differ by chance (an odd half
    of a periodic series taking the reflection made spectral lose the cross-validation it
    should win)."""
    n = x.shape[0]
    p = _cand_params("spectral")
    ext = [half_extension(extension, part, n) for part in (0, 1)]

    def fit(yh: np.ndarray, xs: np.ndarray) -> np.ndarray:
        part = 0 if xs[0] == x[0] else 1
        return smoothed_with_extension(yh, xs, order, p, ext[part])

    return fit


def pick(err: np.ndarray, margin: float) -> np.ndarray:
    """Per column, the first row within ``margin`` of the best (preference on near ties)."""
    best = np.min(err, axis=0)
    ok = err <= best * (1.0 + margin)
    return np.argmax(ok, axis=0)


def _choose(
    y: Any, x: np.ndarray, order: int, params: AutoParams, xp: ModuleType
) -> dict[str, Any]:
    shape = y.shape[:-1]
    names = candidate_names(params, order, x)
    y2 = np.ascontiguousarray(to_numpy(y), dtype=np.float64).reshape(-1, y.shape[-1])
    codes = np.array([CANDIDATES.index(n) for n in names])
    sigma = noise_sigma(y2, np, x=x)
    spread = np.ptp(y2, axis=-1)
    scale = np.where(sigma > 0, sigma, np.where(spread > 0, spread, 1.0) * 1e-12)
    halves = _Halves(y2, x)
    errs = np.empty((len(names), y2.shape[0]))
    chosen: dict[str, Any] = {}
    for c, name in enumerate(names):
        if x.shape[0] // 2 < get_method(name).min_samples(order, _cand_params(name)):
            errs[c] = np.inf
            continue
        spec = get_method(name)
        own: dict[str, Any] = {}
        if name not in TUNINGS and spec.choose is not None and name != "finite_difference":
            # the candidate's own automatic choices on the whole series, recorded
            own = spec.choose(y2, x, order, _cand_params(name), np)
            for key, val in own.items():
                chosen[f"{name}.{key}"] = np.asarray(to_numpy(val)).reshape(shape)
        half_fit = None
        if name == "spectral" and "extension" in own:
            half_fit = _spectral_halves(own["extension"], x, order)
        errs[c], value = tune(name, halves, x, scale, order, half_fit)
        if name == "spline" and value is not None:
            value = _blend_ml(value, y2, x, order, sigma / np.where(spread > 0, spread, 1.0))
        if value is not None:
            chosen[f"{name}.{TUNINGS[name].param}"] = value.reshape(shape)
    periodic = np.zeros(y2.shape[0], dtype=bool)
    if "spectral.extension" in chosen:
        ext = chosen["spectral.extension"].reshape(-1)
        periodic = ext != 0
        bonus = periodic.copy()
        if "spline.smoothing" in chosen and periodic.any():
            rows = np.flatnonzero(periodic & (sigma > 0))
            z = wrap_z(
                y2[rows],
                x,
                chosen["spline.smoothing"].reshape(-1)[rows] * 10.0**-WRAP_LESS,
                sigma[rows],
                ext[rows] == 2,
            )
            bonus[rows] = z <= WRAP_Z
        k = names.index("spectral")
        errs[k] = np.where(bonus, errs[k] * (1.0 - PERIODIC_BONUS), errs[k])
    clean = noise_floor(y2, x, sigma) <= NOISE_FREE * np.where(spread > 0, spread, 1.0)
    if "finite_difference" in names and len(names) > 1:
        # finite differences keep all the noise, which the signal's cross-validation does not
        # see in the derivative: on noisy series they must win by FD_Z standard errors
        m = sum(part[4].shape[1] for part in halves.parts)
        fd = names.index("finite_difference")
        errs[fd] = np.where(clean, errs[fd], errs[fd] * (1.0 + FD_Z * np.sqrt(2.0 / m)))
    choice = pick(errs, params.margin)
    if "finite_difference" in names:
        exact = names.index("spectral") if "spectral" in names else -1
        fd = names.index("finite_difference")
        choice = np.where(clean, np.where(periodic & (exact >= 0), exact, fd), choice)
        # exact data: the highest accuracy the length allows (truncation is all the error)
        acc = np.where(clean, clean_accuracy(order, x.shape[0]), FD_ACCURACY)
        chosen["finite_difference.accuracy"] = acc.reshape(shape)
    chosen["method"] = codes[choice].reshape(shape)
    return {k: asarray_like(v, xp) for k, v in chosen.items()}


def _apply(
    y: Any,
    x: np.ndarray,
    order: int,
    params: AutoParams,
    chosen: dict[str, Any],
    xp: ModuleType,
    smoothed: bool,
) -> Output:
    if "method" not in chosen:
        chosen = _choose(y, x, order, params, xp)
    shape = y.shape
    n = shape[-1]
    y2 = y.reshape(-1, n)
    codes = np.asarray(to_numpy(chosen["method"])).reshape(-1)
    deriv = xp.zeros(y2.shape, dtype=y.dtype)
    sm = xp.zeros(y2.shape, dtype=y.dtype) if smoothed else None
    for code in np.unique(codes):
        name = CANDIDATES[int(code)]
        spec = get_method(name)
        rows = np.flatnonzero(codes == code)
        prefix = f"{name}."
        sub = {
            k[len(prefix) :]: np.asarray(to_numpy(v)).reshape(-1)[rows]
            for k, v in chosen.items()
            if k.startswith(prefix)
        }
        tn = TUNINGS.get(name)
        if tn is not None and tn.integer_odd and tn.param in sub:
            sub[tn.param] = sub[tn.param].astype(np.int64)
        # one call per parameter set: the finite-difference rows may differ in accuracy
        groups = [(np.ones(rows.size, dtype=bool), _cand_params(name))]
        if name == "finite_difference" and "accuracy" in sub:
            acc = sub.pop("accuracy").astype(np.int64)
            groups = [(acc == a, spec.make_params({"accuracy": int(a)})) for a in np.unique(acc)]
        for mask, p in groups:
            gidx = asarray_like(rows[mask], xp, dtype=xp.int64)
            gsub = {k: v[mask] for k, v in sub.items()}
            out = spec.apply(xp.take(y2, gidx, axis=0), x, order, p, gsub, xp, smoothed)
            deriv[gidx] = out.derivative
            if smoothed:
                sm[gidx] = out.smoothed if out.smoothed is not None else xp.take(y2, gidx, axis=0)
    return Output(deriv.reshape(shape), None if sm is None else sm.reshape(shape))


def _min_samples(order: int, params: AutoParams) -> int:
    # each half of the cross-validation must still hold a series long enough
    return max(2 * (order + 5), 12)


SPEC = register(
    MethodSpec(
        name="auto",
        summary="Picks a method and its parameters per series by cross-validation across "
        "methods; reports the choice.",
        params=AutoParams,
        max_order=2,
        apply=_apply,
        footprint=lambda order, params: None,
        choose=_choose,
        min_samples=_min_samples,
        irregular=True,
        nan_omit=False,
        gpu=False,
        has_smoothed=True,
        block_bytes=1 << 22,  # every candidate's halves and fits: ~14x the input (measured)
    )
)
