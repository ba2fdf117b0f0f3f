"""Per-layer key/value cache, so that decoding one token costs O(T) instead of re-running the prompt."""
from __future__ import annotations

import numpy as np


class KVCache:
    """Keys and values of every position seen so far, per layer, as (kv_heads, capacity, qkv_dim) float32.

    Storage grows by doubling up to ``max_len`` (the model's ``max_seq_len``), so a short chat on a
    32K-context model does not allocate the full context up front.
    """

    def __init__(self, num_layers: int, kv_heads: int, qkv_dim: int, max_len: int) -> None:
        self.max_len = max_len
        self.length = 0  # positions stored (= position of the next token)
        self._shape = (kv_heads, 0, qkv_dim)
        self.k = [np.zeros(self._shape, np.float32) for _ in range(num_layers)]
        self.v = [np.zeros(self._shape, np.float32) for _ in range(num_layers)]
        self._probs: np.ndarray | None = None
        self.stale_softmax = False  # emulate gemma.cpp's old attention kernel (inference.ops.attention)

    def _reserve(self, n: int) -> None:
        cap = self.k[0].shape[1]
        if n <= cap:
            return
        new_cap = min(self.max_len, max(n, 2 * cap, 16))
        for store in (self.k, self.v):
            for i, old in enumerate(store):
                grown = np.zeros((old.shape[0], new_cap, old.shape[2]), np.float32)
                grown[:, :cap] = old
                store[i] = grown

    def append(self, layer: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store k, v (kv_heads, T, qkv_dim) for the next T positions of ``layer``; return views of
        all keys and values of that layer so far. Call :meth:`advance` once all layers are done."""
        start, end = self.length, self.length + k.shape[1]
        if end > self.max_len:
            raise ValueError(f"sequence of {end} tokens exceeds the model's max_seq_len {self.max_len}")
        self._reserve(end)
        self.k[layer][:, start:end] = k
        self.v[layer][:, start:end] = v
        return self.k[layer][:, :end], self.v[layer][:, :end]

    def probs(self, rows: int, heads: int, end: int) -> np.ndarray:
        """gemma.cpp's attention-probability buffer: (row of the batch, head, key position) for
        rows 0..rows-1 and keys 0..end-1, zero until written; kept across layers and calls like
        its ``Activations::att`` (see :func:`inference.ops.attention`)."""
        b = self._probs
        if b is None or b.shape[0] < rows or b.shape[2] < end:
            old = b if b is not None else np.zeros((0, heads, 0), np.float32)
            b = np.zeros((max(rows, old.shape[0]), heads, max(end, 2 * old.shape[2], 16)), np.float32)
            b[:old.shape[0], :, :old.shape[2]] = old
            self._probs = b
        return b[:rows, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k + self.v)
