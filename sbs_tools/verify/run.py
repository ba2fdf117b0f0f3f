"""``sbs verify --run``: load the file with the numpy decoder (``inference``) and run it.

A short fixed prompt goes through every text layer, then a few greedy decode
steps; a file with a vision encoder (Gemma 3 / PaliGemma) also runs the ViT on
a fixed synthetic image (a deterministic colour gradient) and an image prompt
through the text layers. Findings:

* ``run-failed``: an exception inside loading or the forward pass, with the
  layer (LLM or ViT) or tensor it happened in;
* ``run-non-finite``: NaN/Inf in the embedding rows, the activations after a
  layer or the logits, with the first place it appears;
* ``run-degenerate``: logits constant across the vocabulary, or identical
  for every position of the prompt (different inputs, same output);
* ``run-skipped`` (info): the decoder does not run this file (an architecture
  it refuses, a pre-2025 file without config), or structural errors.
"""
from __future__ import annotations

import re
import time
from typing import Any

import numpy as np

from .findings import Finding, finding

#: The fixed text prompt: BOS, then ids spread over the vocabulary (no tokenizer needed).
PROMPT_LEN = 8
#: Greedy decode steps after the prompt (each one a single-token forward pass with the KV cache).
DECODE_STEPS = 3
#: The image prompt's text (tokenized with the file's tokenizer when it has one).
IMAGE_TEXT = "Describe the image."
#: Side of the synthetic image, pixels (the ViT resizes it to its image_size).
IMAGE_SIDE = 64

_LAYER_SUFFIX = re.compile(r"_(\d+)$")
_VIT_PREFIXES = ("attn_out_", "qkv_ein_w", "qkv_ein_b", "linear_0_", "linear_1_", "ln_0_", "ln_1_")


class _Stop(Exception):
    """Raised from a layer hook to end the pass at the first non-finite activation."""

    def __init__(self, found: Finding) -> None:
        super().__init__(found.message)
        self.found = found


def prompt_ids(vocab_size: int, n: int = PROMPT_LEN) -> list[int]:
    """BOS (2) then ``n - 1`` distinct ids spread over the vocabulary."""
    step = max(1, (vocab_size - 3) // n)
    return [2] + [min(vocab_size - 1, 3 + k * step + k % 7) for k in range(n - 1)]


def gradient_image(side: int = IMAGE_SIDE) -> np.ndarray:
    """(side, side, 3) uint8: red across, green down, blue along the diagonal."""
    r = np.linspace(0, 255, side)
    red = np.broadcast_to(r[None, :], (side, side))
    green = np.broadcast_to(r[:, None], (side, side))
    blue = (red + green) / 2
    return np.stack([red, green, blue], axis=-1).round().astype(np.uint8)


def _where_layer(name: str | None) -> dict[str, Any]:
    """``layer`` / ``layer_type`` of a tensor name with a ``_N`` suffix."""
    m = _LAYER_SUFFIX.search(name or "")
    if not m:
        return {}
    return {"layer": int(m.group(1)), "layer_type": "kVit" if name.startswith(_VIT_PREFIXES) else "kGemma"}


def _locate(exc: BaseException) -> tuple[dict[str, Any], str]:
    """Where in the decoder ``exc`` was raised: location fields and a stage for the message."""
    where: dict[str, Any] = {}
    stage = ""
    tensor = getattr(exc, "tensor", None)
    tb = exc.__traceback__
    while tb is not None:  # outermost to innermost: the innermost match wins
        code, loc = tb.tb_frame.f_code, tb.tb_frame.f_locals
        if code.co_name == "_layer" and "L" in loc and hasattr(loc["L"], "index"):
            where = {"layer": int(loc["L"].index), "layer_type": "kGemma"}
            stage = f"layer {where['layer']}"
        elif code.co_name == "load_layer" and isinstance(loc.get("i"), int):
            where = {"layer": loc["i"], "layer_type": "kGemma"}
            stage = f"layer {loc['i']}"
        elif code.co_name == "encode" and "vit_layer" in _inner_names(tb) and isinstance(loc.get("i"), int):
            where = {"layer": loc["i"], "layer_type": "kVit"}
            stage = f"ViT layer {loc['i']}"
        elif code.co_name == "encode" and not stage:
            stage = "the vision encoder"
        elif code.co_name == "embed_prompt" and not where:
            stage = "the embedding"
        if tensor is None and isinstance(loc.get("name"), str) and "inference" in code.co_filename:
            tensor = loc["name"]
        tb = tb.tb_next
    if tensor is not None:
        where.setdefault("tensor", tensor)
        if "layer" not in where:
            where.update(_where_layer(tensor))
        stage = stage or f"tensor {tensor}"
    return where, stage


def _inner_names(tb) -> set[str]:
    names = set()
    tb = tb.tb_next
    while tb is not None:
        names.add(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return names


def _failed(exc: BaseException, what: str) -> Finding:
    where, stage = _locate(exc)
    text = str(exc) or type(exc).__name__
    return finding("run-failed", f"{what}{', ' + stage if stage else ''}: {type(exc).__name__}: {text}",
                   hint="the file's tensors or config make the forward pass fail; `sbs verify --deep` decodes "
                        "every tensor, `sbs dump` shows the one named", **where)


def _non_finite(x: np.ndarray, what: str, **where: Any) -> Finding | None:
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    n_nan = int(np.isnan(x).sum())
    return finding("run-non-finite", f"{what}: {int(bad.sum())} of {x.size} values are NaN/Inf ({n_nan} NaN) "
                                     "(the first place they appear)",
                   hint="`sbs verify --deep` finds NaN/Inf weights; a layer whose weights are finite but whose "
                        "output is not has overflowing values (wrong scale, wrong norm convention)", **where)


def _hook(kind: str, seen: dict[str, int]):
    """``on_layer`` for text (``kGemma``) or ViT layers: stop at the first non-finite output."""
    def on_layer(i: int, x: np.ndarray) -> None:
        seen[kind] = max(seen.get(kind, 0), i + 1)
        label = "ViT layer" if kind == "kVit" else "layer"
        found = _non_finite(x, f"activations after {label} {i}", layer=i, layer_type=kind)
        if found is not None:
            raise _Stop(found)
    return on_layer


def _degenerate(logits: np.ndarray, what: str) -> Finding | None:
    spread = logits.max(axis=-1) - logits.min(axis=-1)
    if (spread == 0).any():
        row = int(np.flatnonzero(spread == 0)[0])
        return finding("run-degenerate", f"{what}: the logits of position {row} are the same value "
                                         f"({float(logits[row, 0]):g}) for every one of the {logits.shape[-1]} "
                                         "vocabulary entries", blob="c_embedding",
                       hint="a zeroed embedding or a final norm that zeroes its input (weights of -1: gemma.cpp "
                            "applies 1 + w) gives such logits")
    if logits.shape[0] > 1 and (logits == logits[:1]).all():
        return finding("run-degenerate", f"{what}: the logits are identical for all {logits.shape[0]} "
                                         "positions of the prompt (different tokens, same output)",
                       hint="the output ignores its input: check the embedding and the final norm")
    return None


def _check_logits(logits: np.ndarray, what: str) -> Finding | None:
    return _non_finite(logits, f"logits of {what}", tensor="c_embedding") or _degenerate(logits, f"logits of {what}")


def check_run(path: str, *, max_memory: int | str | None = None, mode: str = "auto") -> tuple[list[Finding], dict]:
    """Load ``path`` with ``inference`` and run it; returns (findings, facts about the run).

    Never raises for a bad file: every exception becomes a ``run-failed`` finding. ``max_memory``
    is the budget that chooses resident or streaming weights (:func:`inference.choose_mode`)."""
    import inference
    from inference import vision as vis

    facts: dict[str, Any] = {"requested_mode": mode}
    t0 = time.perf_counter()
    notes: list[str] = []
    try:
        model = inference.load(path, mode=mode, max_memory=max_memory, progress=False, log=notes.append)
    except inference.UnsupportedModel as e:
        if e.code in ("inference-unsupported", "inference-no-config"):
            return [finding("run-skipped", f"not run: the numpy decoder does not run this file: {e.message}",
                            blob="config" if e.code == "inference-unsupported" else None)], facts
        return [_failed(e, "loading the weights")], facts
    except MemoryError as e:
        return [_failed(e, "loading the weights (out of memory: lower --max-memory to stream)")], facts
    except Exception as e:  # noqa: BLE001 - a bad file must be a finding, not a traceback
        return [_failed(e, "loading the weights")], facts
    facts.update({"mode": "streaming" if model.streaming else "resident",
                  "mode_reason": next((n.split(": ", 1)[1] for n in notes if " mode: " in n), ""),
                  "weights_bytes": model.weights.nbytes, "layers": model.weights.num_layers})
    seen: dict[str, int] = {}
    try:
        found = _run_text(model, seen, facts)
        if found is None and model.config.vit_config.layer_configs:
            found = _run_image(model, vis, seen, facts)
    except _Stop as s:
        found = s.found
    except MemoryError as e:
        found = _failed(e, "the forward pass (out of memory: lower --max-memory to stream)")
    except Exception as e:  # noqa: BLE001
        found = _failed(e, "the forward pass")
    finally:
        model.close()
    facts["seconds"] = round(time.perf_counter() - t0, 3)
    facts["layers_run"] = seen.get("kGemma", 0)
    facts["vit_layers_run"] = seen.get("kVit", 0)
    return ([found] if found is not None else []) + facts.pop("_skipped", []), facts


def _run_text(model, seen: dict[str, int], facts: dict) -> Finding | None:
    ids = prompt_ids(model.vocab_size, max(1, min(PROMPT_LEN, model.config.max_seq_len - DECODE_STEPS)))
    facts["prompt_tokens"] = len(ids)
    rows = np.asarray(model.weights.embedding[np.asarray(ids)], np.float32)
    found = _non_finite(rows, f"embedding rows of the prompt tokens {ids}", tensor="c_embedding")
    if found is not None:
        return found
    on_layer = _hook("kGemma", seen)
    cache = model.new_cache()
    logits = model.forward(ids, cache, on_layer=on_layer)
    found = _check_logits(logits, f"the prompt {ids}")
    if found is not None:
        return found
    row, steps = logits[-1], 0
    for _ in range(DECODE_STEPS):
        if cache.length >= cache.max_len:
            break
        token = int(np.argmax(row))
        row = model.forward([token], cache, on_layer=on_layer)[-1]
        steps += 1
        found = _check_logits(row[None], f"decode step {steps} (token {token})")
        if found is not None:
            return found
    facts["decode_steps"] = steps
    return None


def _run_image(model, vis, seen: dict[str, int], facts: dict) -> Finding | None:
    try:
        vis.check_vit(model.config)
    except Exception as e:  # noqa: BLE001 - UnsupportedModel: the text run stands, the image part is skipped
        facts["_skipped"] = [finding("run-skipped", f"image path not run: {getattr(e, 'message', e)}",
                                     blob="config")]
        return None
    image = gradient_image()
    stages: dict[str, np.ndarray] = {}
    rows = model.image_tokens(image, stages, on_layer=_hook("kVit", seen))
    for stage in ("embed", "encoder_norm", "image_tokens"):
        found = _non_finite(stages[stage], f"ViT {stage.replace('_', ' ')} of the test image",
                            **({"layer": 0, "layer_type": "kVit"} if stage == "embed" else {}))
        if found is not None:
            return found
    n = rows.shape[0]
    if model.tokenizer is not None:
        ids = model.wrap(IMAGE_TEXT, image=image)
    elif model.config.wrapping == vis.PALIGEMMA:
        ids = [vis.PALI_ID] * n + prompt_ids(model.vocab_size)
    else:
        ids = prompt_ids(model.vocab_size)[:1] + [vis.IMAGE_ID] * n + prompt_ids(model.vocab_size)[1:]
    facts["image_prompt_tokens"] = len(ids)
    logits = model.forward(ids, model.new_cache(), last_only=True, image=rows, on_layer=_hook("kGemma", seen))
    return _check_logits(logits, f"the image prompt ({len(ids)} tokens, {n} image tokens)")
