"""Analytic test signals with exact derivatives, shared by the kernel and engine tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr


@dataclass(frozen=True)
class Truth:
    """A signal on [a, b] and its derivatives of order 0..len(derivs)-1."""

    name: str
    a: float
    b: float
    derivs: tuple[Callable[[np.ndarray], np.ndarray], ...]

    def __call__(self, x: np.ndarray, order: int = 0) -> np.ndarray:
        return self.derivs[order](x)

    def grid(self, n: int, irregular: bool = False, seed: int = 0) -> np.ndarray:
        """n points on [a, b], evenly spaced or jittered (ends kept)."""
        x = np.linspace(self.a, self.b, n)
        if irregular:
            rng = np.random.default_rng(seed)
            h = (self.b - self.a) / (n - 1)
            x[1:-1] += rng.uniform(-0.35 * h, 0.35 * h, n - 2)
        return x


def _bs_call(s, k=100.0, r=0.02, sigma=0.25, t=0.5):
    sq = sigma * np.sqrt(t)
    d1 = (np.log(s / k) + (r + 0.5 * sigma**2) * t) / sq
    return s * ndtr(d1) - k * np.exp(-r * t) * ndtr(d1 - sq)


def _bs_delta(s, k=100.0, r=0.02, sigma=0.25, t=0.5):
    sq = sigma * np.sqrt(t)
    d1 = (np.log(s / k) + (r + 0.5 * sigma**2) * t) / sq
    return ndtr(d1)


def _bs_gamma(s, k=100.0, r=0.02, sigma=0.25, t=0.5):
    sq = sigma * np.sqrt(t)
    d1 = (np.log(s / k) + (r + 0.5 * sigma**2) * t) / sq
    return np.exp(-0.5 * d1**2) / np.sqrt(2 * np.pi) / (s * sq)


TRUTHS = {
    "sin": Truth(
        "sin",
        0.0,
        2 * np.pi,
        (np.sin, np.cos, lambda x: -np.sin(x), lambda x: -np.cos(x), np.sin),
    ),
    "exp": Truth("exp", 0.0, 2.0, (np.exp,) * 5),
    "poly": Truth(
        "poly",
        -1.0,
        1.0,
        (
            lambda x: 1 + 2 * x - 3 * x**2 + 0.5 * x**3,
            lambda x: 2 - 6 * x + 1.5 * x**2,
            lambda x: -6 + 3 * x,
            lambda x: 3 + 0 * x,
            lambda x: 0 * x,
        ),
    ),
    "black_scholes": Truth("black_scholes", 60.0, 140.0, (_bs_call, _bs_delta, _bs_gamma)),
}


def noisy(y: np.ndarray, level: float, seed: int = 1) -> np.ndarray:
    """y plus Gaussian noise of standard deviation ``level`` times y's spread."""
    rng = np.random.default_rng(seed)
    return y + level * np.ptp(y) * rng.standard_normal(y.shape)


def rmse(a: np.ndarray, b: np.ndarray, trim: int = 0) -> float:
    """Root-mean-square difference along the last axis, dropping ``trim`` points per end."""
    sl = slice(trim, a.shape[-1] - trim if trim else None)
    return float(np.sqrt(np.mean((a[..., sl] - b[..., sl]) ** 2)))
