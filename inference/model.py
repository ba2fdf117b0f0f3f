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
from . import vision as vis
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
                 numerics: str = "gemmacpp", path: str = "", vision: str = "gemmacpp",
                 vit: "vis.VitWeights | None" = None, progress: PassProgress = no_progress) -> None:
        if vision not in vis.VISION_MODES:
            raise ValueError(f"vision must be one of {vis.VISION_MODES}, not {vision!r}")
        self.config, self.weights, self.tokenizer = config, weights, tokenizer
        self.rope, self.numerics, self.path, self.progress = rope, numerics, path, progress
        self.vision, self._vit = vision, vit
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

    # -- images (inference/vision.py) ----------------------------------------------
    @property
    def vit(self) -> "vis.VitWeights":
        """The vision encoder's weights, decoded from the file on first use."""
        if self._vit is None:
            import sbs_tools

            vis.check_vit(self.config)
            with sbs_tools.open(self.path) as f:
                self._vit = vis.load_vit(f, self.numerics)
        return self._vit

    def image_tokens(self, image, stages: dict | None = None, on_layer: LayerHook | None = None) -> np.ndarray:
        """(num_image_tokens, model_dim) float32: what ``image`` (a path, or an (H, W, 3) uint8
        array) contributes to the prompt. ``stages`` (a dict) receives the ViT's intermediates;
        ``on_layer(i, x)`` is called after ViT layer i."""
        return vis.encode(self.vit, vis.read_image(image), self.vision, stages, on_layer)

    def wrap(self, text: str, image=None) -> list[int]:
        """The prompt ids gemma.cpp's ``WrapAndTokenize`` builds for this file's wrapping, with one
        placeholder per image token when ``image`` is given (its pixels are not read here)."""
        if self.tokenizer is None:
            raise ValueError("the file carries no tokenizer")
        rows = None
        if image is not None:
            vis.check_vit(self.config)
            rows = vis.num_image_tokens(self.config)
        return vis.wrap(self.tokenizer, self.config.wrapping, text, rows)

    def _image_rows(self, image) -> np.ndarray | None:
        """``image`` as rows for the prompt: None, rows from :meth:`image_tokens`, or an image."""
        if image is None:
            return None
        if isinstance(image, np.ndarray) and image.ndim == 2:
            if image.shape != (vis.num_image_tokens(self.config), self.config.model_dim):
                raise ValueError(f"image rows must be (num_image_tokens, model_dim), not {image.shape}")
            return image.astype(np.float32, copy=False)
        return self.image_tokens(image)

    # -- forward -------------------------------------------------------------
    def _check_tokens(self, tokens, image: bool = False) -> np.ndarray:
        t = np.asarray(tokens, dtype=np.int64).reshape(-1)
        ok = (t >= 0) & (t < self.vocab_size)
        if image and self.config.wrapping == vis.GEMMA_VLM:
            ok |= t == vis.IMAGE_ID
        if not ok.all():
            bad = int(t[~ok][0])
            raise ValueError(f"token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})")
        return t

    def _layer(self, x: np.ndarray, L: LayerWeights, pos: np.ndarray, cache: KVCache,
               mask_fn: vis.MaskFn | None = None) -> np.ndarray:
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
        emulate = cache.stale_softmax  # gemma.cpp's old attention kernel (ops.attention, vision.py 6.)
        lo = 0 if mask_fn or emulate else max(0, int(pos[0]) - L.window + 1)  # no query sees keys before lo
        keys = np.arange(lo, k_all.shape[1])
        mask = (mask_fn or ops.attention_mask)(pos, keys, L.window)
        probs = cache.probs(T, H, k_all.shape[1]) if emulate else None
        stale = keys[None, :] <= pos[:, None] - L.window if emulate else None
        a = linear(ops.attention(q, k_all[:, lo:], v_all[:, lo:], mask, self.config.att_cap, probs, stale), L.w_o)
        if L.post_att_norm is not None:
            a = ops.rmsnorm(a, L.post_att_norm)
        x = x + a
        h = ops.rmsnorm(x, L.pre_ff_norm)
        f = linear(ops.gelu(linear(h, L.w_gate)) * linear(h, L.w_up), L.w_down)
        if L.post_ff_norm is not None:
            f = ops.rmsnorm(f, L.post_ff_norm)
        return x + f

    def forward(self, tokens, cache: KVCache, trace: list | None = None, last_only: bool = False,
                image: np.ndarray | None = None, on_layer: LayerHook | None = None) -> np.ndarray:
        """Run ``tokens`` at the next positions of ``cache`` (which they are appended to); return
        their logits (T, vocab), or only the last token's (1, vocab) with ``last_only``. With
        ``trace`` (a list), append the residual stream after each layer and the final-norm output;
        ``on_layer(i, x)`` is called after layer i (raise in it to stop the pass).
        ``image``: rows of :meth:`image_tokens` for the image placeholders of ``tokens``."""
        t = self._check_tokens(tokens, image is not None)
        if t.size == 0:
            return np.zeros((0, self.vocab_size), np.float32)
        pos = np.arange(cache.length, cache.length + t.size)
        if image is not None and self.numerics == "gemmacpp":
            cache.stale_softmax = True  # from here on, as the build the image references come from
        w = self.weights
        n = w.num_layers
        with self.progress(n + 1) as tick:
            x, mask_fn = vis.embed_prompt(t, pos, image, self.config.wrapping, self.vision,
                                          lambda ids: w.embedding[ids] * self.emb_mult)
            for i in range(n):
                x = self._layer(x, w.layers[i], pos, cache, mask_fn)
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

    def logits(self, tokens, image=None, on_layer: LayerHook | None = None) -> np.ndarray:
        """Logits (len(tokens), vocab) float32 of a whole prompt, one batched pass; ``image`` (a
        path, an (H, W, 3) uint8 array or :meth:`image_tokens` rows) fills its placeholders
        (PaliGemma: ``tokens`` are its prefix); ``on_layer`` as in :meth:`forward`."""
        return self.forward(tokens, self.new_cache(), image=self._image_rows(image), on_layer=on_layer)

    # -- generation -------------------------------------------------------------
    def stream(self, tokens, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
               seed: int | None = None, stop_at_eos: bool = True,
               on_logits: Callable[[np.ndarray], None] | None = None, image=None) -> Iterator[int]:
        """Yield up to ``max_new_tokens`` new tokens: one batched prefill of the prompt, then one
        cached decode step per token. Stops before an EOS id (not yielded) if ``stop_at_eos``.
        ``image`` fills the prompt's image placeholders (see :meth:`logits`; build the prompt with
        :meth:`wrap`). Timings land in :attr:`stats` (prompt_tokens, prompt_seconds,
        decode_tokens, decode_seconds)."""
        rows = self._image_rows(image)
        prompt = self._check_tokens(tokens, rows is not None)
        if prompt.size == 0:
            raise ValueError("the prompt must contain at least one token")
        rng = np.random.default_rng(seed)
        cache = self.new_cache()
        self.stats = {"prompt_tokens": prompt.size, "prompt_seconds": 0.0, "decode_tokens": 0,
                      "decode_seconds": 0.0}
        t0 = time.perf_counter()
        # As gemma.cpp: prefill all but the last prompt token, which runs as the first decode step.
        # A PaliGemma prompt with an image is one prefix, prefilled whole: gemma.cpp then runs its
        # last token again (vision.py, 5.), the published model samples from the last position.
        prefix = rows is not None and self.config.wrapping == vis.PALIGEMMA
        if prefix or prompt.size > 1:
            row = self.forward(prompt if prefix else prompt[:-1], cache, last_only=True, image=rows)[-1]
        if cache.length >= cache.max_len:
            return
        if not prefix or vis.refeeds_last_token(self.config.wrapping, self.vision):
            row = self.forward(prompt[-1:], cache)[-1]
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
                 seed: int | None = None, stop_at_eos: bool = True, image=None) -> list[int]:
        """The new tokens (not the prompt); greedy when ``temperature`` is 0."""
        return list(self.stream(tokens, max_new_tokens, temperature, top_k, seed, stop_at_eos, image=image))

    def __repr__(self) -> str:
        c = self.config
        mode = "streaming" if self.streaming else "resident"
        return (f"<Model {c.specifier} layers={self.weights.num_layers} D={c.model_dim} vocab={c.vocab_size} "
                f"rope={self.rope} numerics={self.numerics} vision={self.vision} {mode} "
                f"weights={self.weights.nbytes / 2**20:.1f} MiB>")
