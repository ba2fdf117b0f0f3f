"""Choosing the next token from a row of logits."""
from __future__ import annotations

import numpy as np


def greedy(logits: np.ndarray) -> int:
    """Argmax; the lowest index wins ties (as gemma.cpp's sampler)."""
    return int(np.argmax(logits))


def sample(logits: np.ndarray, temperature: float = 0.0, top_k: int = 0,
           rng: np.random.Generator | None = None) -> int:
    """Greedy when ``temperature <= 0``; else softmax(logits / temperature) restricted to the
    ``top_k`` largest logits (0 = all), drawn with ``rng`` (seed it for reproducible output)."""
    if temperature <= 0:
        return greedy(logits)
    rng = rng if rng is not None else np.random.default_rng()
    z = np.asarray(logits, dtype=np.float64) / temperature
    if 0 < top_k < z.size:
        keep = np.argpartition(-z, top_k - 1)[:top_k]
        keep.sort()
    else:
        keep = np.arange(z.size)
    p = np.exp(z[keep] - z[keep].max())
    p /= p.sum()
    return int(keep[rng.choice(keep.size, p=p)])
