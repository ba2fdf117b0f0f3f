"""A Gemma decoder forward pass over decoded ``.sbs`` weights (spec §8), in plain numpy.

    x = embedding[token] * bf16(sqrt(D))
    per layer:  x += post_att_norm(attention(pre_att_norm(x)))
                x += post_ff_norm(ffw(pre_ff_norm(x)))
    logits = softcap(final_norm(x) @ embedding.T, final_cap)
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, ContextManager, Iterator

import numpy as np

from . import ops
from .kvcache import KVCache
from .sampling import sample
from .weights import LayerWeights, Weights, linear

#: ``on_layer(index, x)``: called after each decoder layer with the residual stream x (T, D).
LayerHook = Callable[[int, np.ndarray], None]
#: ``progress(total)`` -> a context manager giving ``tick(done)``; wraps each forward pass.
PassProgress = Callable[[int], ContextManager[Callable[[int], None]]]


def no_progress(total: int) -> ContextManager[Callable[[int], None]]:
    return contextlib.nullcontext(lambda done: None)


class Model:
    """A loaded text decoder. Build with :func:`inference.load`.

    ``weights``: every matrix decoded (resident) or streamed from the file a row block at a time;
    both give bit-identical logits (every product runs in the same row blocks).
    """

    def __init__(self, config, weights: Weights, tokenizer=None, *, rope: str = "gemmacpp",
                 numerics: str = "gemmacpp", path: str = "", progress: PassProgress = no_progress) -> None:
        self.config, self.weights, self.tokenizer = config, weights, tokenizer
        self.rope, self.numerics, self.path, self.progress = rope, numerics, path, progress
        first = config.layer_configs[0]
        self.emb_mult = ops.embedding_multiplier(config.model_dim)
        self.q_scale = ops.query_scale(config.query_scale, config.model_dim, first.heads, first.qkv_dim)
        self.eos_ids = {config.eos_id, config.secondary_eos_id}
        self.stats: dict[str, float] = {}

    @property
    def streaming(self) -> bool:
        return self.weights.streaming

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def notes(self) -> list[str]:
        return self.weights.notes

    def new_cache(self) -> KVCache:
        first = self.config.layer_configs[0]
        return KVCache(self.weights.num_layers, first.kv_heads, first.qkv_dim, self.config.max_seq_len)

    def close(self) -> None:
        """Unmap the file (streaming mode); the model cannot run afterwards."""
        self.weights.close()

    # -- forward -------------------------------------------------------------
    def _check_tokens(self, tokens) -> np.ndarray:
        t = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if t.size and (t.min() < 0 or t.max() >= self.vocab_size):
            bad = int(t[(t < 0) | (t >= self.vocab_size)][0])
            raise ValueError(f"token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})")
        return t

    def _layer(self, x: np.ndarray, L: LayerWeights, pos: np.ndarray, cache: KVCache) -> np.ndarray:
        T, H, K, Dh = x.shape[0], L.heads, L.kv_heads, L.qkv_dim
        h = ops.rmsnorm(x, L.pre_att_norm)
        q = linear(h, L.w_q).reshape(T, H, Dh).transpose(1, 0, 2)  # (H, T, Dh)
        kv = linear(h, L.w_kv).reshape(T, K, 2, Dh)
        k, v = kv[:, :, 0].transpose(1, 0, 2), kv[:, :, 1].transpose(1, 0, 2)  # (K, T, Dh)
        if L.query_norm is not None:
            q, k = ops.rmsnorm(q, L.query_norm), ops.rmsnorm(k, L.key_norm)
        q = ops.rope(q * self.q_scale, pos, L.rope_base)
        k = ops.rope(k, pos, L.rope_base)
        k_all, v_all = cache.append(L.index, k, v)
        lo = max(0, int(pos[0]) - L.window + 1)  # no query of this chunk sees keys before lo
        mask = ops.attention_mask(pos, np.arange(lo, k_all.shape[1]), L.window)
        a = linear(ops.attention(q, k_all[:, lo:], v_all[:, lo:], mask, self.config.att_cap), L.w_o)
        if L.post_att_norm is not None:
            a = ops.rmsnorm(a, L.post_att_norm)
        x = x + a
        h = ops.rmsnorm(x, L.pre_ff_norm)
        f = linear(ops.gelu(linear(h, L.w_gate)) * linear(h, L.w_up), L.w_down)
        if L.post_ff_norm is not None:
            f = ops.rmsnorm(f, L.post_ff_norm)
        return x + f

    def forward(self, tokens, cache: KVCache, trace: list | None = None, last_only: bool = False,
                on_layer: LayerHook | None = None) -> np.ndarray:
        """Run ``tokens`` at the next positions of ``cache`` (which they are appended to); return
        their logits (T, vocab), or only the last token's (1, vocab) with ``last_only``. With
        ``trace`` (a list), append the residual stream after each layer and the final-norm output;
        ``on_layer(i, x)`` is called after layer i (raise in it to stop the pass)."""
        t = self._check_tokens(tokens)
        if t.size == 0:
            return np.zeros((0, self.vocab_size), np.float32)
        pos = np.arange(cache.length, cache.length + t.size)
        w = self.weights
        n = w.num_layers
        with self.progress(n + 1) as tick:
            x = w.embedding[t] * self.emb_mult
            for i in range(n):
                x = self._layer(x, w.layers[i], pos, cache)
                if trace is not None:
                    trace.append(x)
                if on_layer is not None:
                    on_layer(i, x)
                tick(i + 1)
            cache.advance(t.size)
            x = ops.rmsnorm(x[-1:] if last_only else x, w.final_norm)
            if trace is not None:
                trace.append(x)
            logits = linear(x, w.unembedding)
            tick(n + 1)
        return ops.softcap(logits, self.config.final_cap).astype(np.float32, copy=False)

    def logits(self, tokens, on_layer: LayerHook | None = None) -> np.ndarray:
        """Logits (len(tokens), vocab) float32 of a whole prompt, one batched pass."""
        return self.forward(tokens, self.new_cache(), on_layer=on_layer)

    # -- generation -------------------------------------------------------------
    def stream(self, tokens, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
               seed: int | None = None, stop_at_eos: bool = True,
               on_logits: Callable[[np.ndarray], None] | None = None) -> Iterator[int]:
        """Yield up to ``max_new_tokens`` new tokens: one batched prefill of the prompt, then one
        cached decode step per token. Stops before an EOS id (not yielded) if ``stop_at_eos``.
        Timings land in :attr:`stats` (prompt_tokens, prompt_seconds, decode_tokens, decode_seconds)."""
        prompt = self._check_tokens(tokens)
        if prompt.size == 0:
            raise ValueError("the prompt must contain at least one token")
        rng = np.random.default_rng(seed)
        cache = self.new_cache()
        self.stats = {"prompt_tokens": prompt.size, "prompt_seconds": 0.0, "decode_tokens": 0,
                      "decode_seconds": 0.0}
        t0 = time.perf_counter()
        row = self.forward(prompt, cache, last_only=True)[-1]
        self.stats["prompt_seconds"] = time.perf_counter() - t0
        for i in range(max_new_tokens):
            if cache.length >= cache.max_len:  # the new token would not fit in the context
                return
            if on_logits:
                on_logits(row)
            token = sample(row, temperature, top_k, rng)
            if stop_at_eos and token in self.eos_ids:
                return
            yield token
            if i + 1 == max_new_tokens:
                return
            t0 = time.perf_counter()
            row = self.forward([token], cache)[-1]
            self.stats["decode_seconds"] += time.perf_counter() - t0
            self.stats["decode_tokens"] += 1

    def generate(self, tokens, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
                 seed: int | None = None, stop_at_eos: bool = True) -> list[int]:
        """The new tokens (not the prompt); greedy when ``temperature`` is 0."""
        return list(self.stream(tokens, max_new_tokens, temperature, top_k, seed, stop_at_eos))

    def __repr__(self) -> str:
        c = self.config
        mode = "streaming" if self.streaming else "resident"
        return (f"<Model {c.specifier} layers={self.weights.num_layers} D={c.model_dim} vocab={c.vocab_size} "
                f"rope={self.rope} numerics={self.numerics} {mode} weights={self.weights.nbytes / 2**20:.1f} MiB>")
