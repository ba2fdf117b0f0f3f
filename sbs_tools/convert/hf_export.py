"""``.sbs`` -> Hugging Face checkpoint directory: the inverse of :mod:`.hf_import`.

Writes ``config.json`` (transformers' ``gemma2`` / ``gemma3_text`` /
``gemma3`` / ``paligemma`` schema, derived from the ModelConfig),
``model.safetensors`` (float32, decoded values with scales applied) and
``tokenizer.model`` (the file's tokenizer blob). Text-only models use
``model.*`` names (``Gemma2ForCausalLM`` / ``Gemma3ForCausalLM``); models
with a vision tower use ``model.language_model.*``,
``model.vision_tower.vision_model.*`` and ``model.multi_modal_projector.*``.

Either form of a split tensor is accepted (``att_ein`` or ``att_w``,
``qkv_ein`` or ``qkv1_w``/``qkv2_w``, ``gating_ein`` or
``gating1_w``/``gating2_w``). gemma.cpp's RoPE quirk for 270M is not
transcribed: the ``config.json`` states the original model definition
(``rope_theta`` 1e6 on global layers).
"""
from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np

from .. import canonical as C
from ..config import NEW_ARCHITECTURE_MODELS, ModelConfig
from ..errors import SbsError
from ..output import PendingFile, check_output_dir, make_output_dir, write_pending
from ..sbsfile import SbsFile
from . import names
from .hf_import import LAYER_NORMS
from .safetensors_io import StItem, write_safetensors


def hf_config(cfg: ModelConfig) -> dict:
    """A transformers ``config.json`` for ``cfg``."""
    lc = cfg.layer_configs[0]
    g3 = bool(lc.use_qk_norm)
    local = [w for w in cfg.attention_window_sizes if w < cfg.max_seq_len]
    window = local[0] if local else cfg.max_seq_len
    text = {
        "model_type": "gemma3_text" if g3 else "gemma2",
        "hidden_size": cfg.model_dim, "intermediate_size": lc.ff_hidden_dim,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": lc.heads,
        "num_key_value_heads": lc.kv_heads, "head_dim": lc.qkv_dim, "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_seq_len, "sliding_window": window,
        "layer_types": ["full_attention" if w >= cfg.max_seq_len else "sliding_attention"
                        for w in cfg.attention_window_sizes],
        "query_pre_attn_scalar": lc.qkv_dim if cfg.query_scale == C.SQRT_KEY_SIZE
        else cfg.layer_configs[0].model_dim // lc.heads,
        "attn_logit_softcapping": cfg.att_cap or None, "final_logit_softcapping": cfg.final_cap or None,
        "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh",
        "bos_token_id": 2, "eos_token_id": [cfg.eos_id, cfg.secondary_eos_id], "pad_token_id": 0,
        "rope_theta": 1_000_000.0 if g3 else 10_000.0, "torch_dtype": "float32",
    }
    if g3:
        text["rope_local_base_freq"] = 10_000.0
    vit = cfg.vit_config
    name = {"_name_or_path": cfg.specifier, "sbs_model": cfg.model_name, "sbs_wrapping": cfg.wrapping_name,
            "sbs_display_name": cfg.display_name}
    if not vit.layer_configs:
        text["architectures"] = ["Gemma3ForCausalLM" if g3 else "Gemma2ForCausalLM"]
        return {**text, **name}
    vl = vit.layer_configs[0]
    vision = {"model_type": "siglip_vision_model", "hidden_size": vit.model_dim, "intermediate_size": vl.ff_hidden_dim,
              "num_hidden_layers": len(vit.layer_configs), "num_attention_heads": vl.heads,
              "image_size": vit.image_size, "patch_size": vit.patch_width, "layer_norm_eps": 1e-6}
    if g3:
        return {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"], "text_config": text,
                "vision_config": vision, "mm_tokens_per_image": vit.seq_len // max(vit.pool_dim, 1) ** 2, **name}
    return {"model_type": "paligemma", "architectures": ["PaliGemmaForConditionalGeneration"],
            "text_config": text, "vision_config": vision, "projection_dim": cfg.model_dim, **name}


def _has(f: SbsFile, *names_: str) -> bool:
    return all(n in f.tensors for n in names_)


def hf_tensors(f: SbsFile) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """(Hugging Face name, producer of its float32 array) in a stable order."""
    from ..export import decoded

    cfg = f.config
    vlm = bool(cfg.vit_config.layer_configs)
    lm = "model.language_model." if vlm else "model."
    vis, proj = "model.vision_tower.vision_model.", "model.multi_modal_projector."
    g3 = bool(cfg.layer_configs and cfg.layer_configs[0].use_qk_norm)
    d = lambda n: decoded(f, n)  # noqa: E731
    vec = lambda n: d(n).reshape(-1)  # noqa: E731
    out: list[tuple[str, Callable[[], np.ndarray]]] = [
        (lm + "embed_tokens.weight", lambda: d("c_embedding")),
        (lm + "norm.weight", lambda: vec("c_final_norm")),
    ]
    for i, lc in enumerate(cfg.layer_configs):
        b, s = f"{lm}layers.{i}.", f"_{i}"
        H, K, Dh, D = lc.heads, lc.kv_heads, lc.qkv_dim, lc.model_dim or cfg.model_dim

        def qkv(i=i, s=s, H=H, K=K, Dh=Dh):
            if _has(f, "qkv_ein" + s):
                return names.split_qkv_ein(d("qkv_ein" + s), H, K, Dh)
            q = d("qkv1_w" + s)
            _, k, v = names.split_qkv_ein(np.concatenate([q, d("qkv2_w" + s)]), H, K, Dh)
            return q, k, v

        def gating(s=s):
            if _has(f, "gating_ein" + s):
                g = d("gating_ein" + s)
                return np.split(g, 2)
            return d("gating1_w" + s), d("gating2_w" + s)

        def o_proj(s=s, H=H, D=D):
            if _has(f, "att_ein" + s):
                return names.o_proj_from_att_ein(d("att_ein" + s), H, D)
            return d("att_w" + s)

        out += [(b + "self_attn.q_proj.weight", lambda q=qkv: q()[0]),
                (b + "self_attn.k_proj.weight", lambda q=qkv: q()[1]),
                (b + "self_attn.v_proj.weight", lambda q=qkv: q()[2]),
                (b + "self_attn.o_proj.weight", o_proj),
                (b + "mlp.gate_proj.weight", lambda g=gating: g()[0]),
                (b + "mlp.up_proj.weight", lambda g=gating: g()[1]),
                (b + "mlp.down_proj.weight", lambda s=s: d("linear_w" + s))]
        for base, hf in LAYER_NORMS.items():
            if _has(f, base + s):
                out.append((f"{b}{hf}.weight", lambda n=base + s: vec(n)))
    if vlm:
        out += [(vis + "post_layernorm.bias", lambda: vec("enc_norm_bias")),
                (vis + "post_layernorm.weight", lambda: vec("enc_norm_scale")),
                (vis + "embeddings.patch_embedding.bias", lambda: vec("img_emb_bias")),
                (vis + "embeddings.patch_embedding.weight", lambda: _unpatch(d("img_emb_kernel"),
                                                                              cfg.vit_config.patch_width)),
                (vis + "embeddings.position_embedding.weight", lambda: d("img_pos_emb"))]
        if g3:
            out += [(proj + "mm_input_projection_weight", lambda: np.ascontiguousarray(d("img_head_kernel").T)),
                    (proj + "mm_soft_emb_norm.weight", lambda: vec("mm_embed_norm"))]
        else:
            out += [(proj + "linear.weight", lambda: d("img_head_kernel")),
                    (proj + "linear.bias", lambda: vec("img_head_bias"))]
        for i, lc in enumerate(cfg.vit_config.layer_configs):
            v, s = f"{vis}encoder.layers.{i}.", f"_{i}"

            def qkvw(s=s, H=lc.heads):
                w = d("qkv_ein_w" + s)
                return w.reshape(H, 3, -1, w.shape[1])

            def qkvb(s=s, H=lc.heads):
                return d("qkv_ein_b" + s).reshape(H, 3, -1)

            for j, x in enumerate("qkv"):
                out += [(v + f"self_attn.{x}_proj.weight",
                         lambda q=qkvw, j=j: (lambda w: w[:, j].reshape(-1, w.shape[-1]))(q())),
                        (v + f"self_attn.{x}_proj.bias", lambda q=qkvb, j=j: q()[:, j].reshape(-1))]
            out += [(v + "self_attn.out_proj.weight", lambda s=s: d("attn_out_w" + s)),
                    (v + "self_attn.out_proj.bias", lambda s=s: vec("attn_out_b" + s)),
                    (v + "mlp.fc1.weight", lambda s=s: d("linear_0_w" + s)),
                    (v + "mlp.fc1.bias", lambda s=s: vec("linear_0_b" + s)),
                    (v + "mlp.fc2.weight", lambda s=s: d("linear_1_w" + s)),
                    (v + "mlp.fc2.bias", lambda s=s: vec("linear_1_b" + s)),
                    (v + "layer_norm1.weight", lambda s=s: vec("ln_0_scale" + s)),
                    (v + "layer_norm1.bias", lambda s=s: vec("ln_0_bias" + s)),
                    (v + "layer_norm2.weight", lambda s=s: vec("ln_1_scale" + s)),
                    (v + "layer_norm2.bias", lambda s=s: vec("ln_1_bias" + s))]
    return out


def _unpatch(kernel: np.ndarray, patch: int) -> np.ndarray:
    """``img_emb_kernel`` (Dv, P*P*C) with columns (h, w, c) -> conv weight (Dv, C, P, P)."""
    Dv = kernel.shape[0]
    return np.ascontiguousarray(kernel.reshape(Dv, patch, patch, -1).transpose(0, 3, 1, 2))


#: The files of a Hugging Face checkpoint directory that :func:`write_hf` writes (and only ever replaces).
HF_FILES = ("config.json", "model.safetensors", "tokenizer.model")


def write_hf(f: SbsFile, out: str | os.PathLike, *, tokenizer: bool = True,
             tick: Callable[[str], None] = lambda n: None, overwrite: bool = False) -> int:
    """Write the Hugging Face directory ``out``; returns the bytes written.

    The output policy applies (:func:`~sbs_tools.output.check_output_dir`): a non-empty ``out`` needs
    ``overwrite=True``, and then only :data:`HF_FILES` are replaced; nothing else in it is touched.
    Every file goes to a temporary file first; all are renamed into place only once all are written."""
    if f.config is None:
        raise SbsError(f"{f.path}: no config", code="no-config")
    cfg = f.config
    if cfg.model in NEW_ARCHITECTURE_MODELS or cfg.is_encoder_decoder or any(lc.type for lc in cfg.layer_configs):
        raise SbsError(f"{f.path}: {cfg.model_name} is not a Gemma 2 / PaliGemma 2 / Gemma 3 model; the Hugging "
                       "Face export writes those layouts only (`sbs export` to .safetensors or .npz keeps every "
                       "tensor)", code="unsupported-arch")
    tok = f.tokenizer_bytes if tokenizer else None
    names = [n for n in HF_FILES if n != "tokenizer.model" or tok]
    check_output_dir(out, names, [f.path], force=overwrite)
    created = not os.path.isdir(out)
    make_output_dir(out)
    pending = {n: PendingFile(os.path.join(out, n)) for n in names}
    try:
        size = 0
        for name in names:
            if name == "config.json":
                size += write_pending(pending[name], json.dumps(hf_config(cfg), indent=2) + "\n")
            elif name == "tokenizer.model":
                size += write_pending(pending[name], tok)
            else:
                size += _write_hf_tensors(f, pending[name], tick)
        for p in pending.values():
            p.commit()
    except BaseException:
        for p in pending.values():
            p.discard()
        if created:
            _remove_if_empty(out)
        raise
    return size


def _write_hf_tensors(f: SbsFile, pending: PendingFile, tick: Callable[[str], None]) -> int:
    tensors = hf_tensors(f)
    # Shapes must be known before the header is written: compute each tensor once, cache small
    # ones, and recompute the large ones while streaming (one tensor in memory at a time).
    shapes = {}
    for name, prod in tensors:
        shapes[name] = _expected_shape(f, name, prod)
    items = [StItem(name, "F32", shapes[name], lambda p=prod, n=name: [_checked(p(), shapes[n], n)])
             for name, prod in tensors]
    return write_safetensors(pending, items, {"format": "pt", "source": "sbs-export"},
                             progress=lambda it: tick(it.name))


def _remove_if_empty(d: str | os.PathLike) -> None:
    try:
        os.rmdir(d)  # only succeeds on an empty directory: never deletes anything else
    except OSError:
        pass


def _checked(a: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.shape != shape:
        raise SbsError(f"{name}: produced {a.shape}, expected {shape}", code="shape-mismatch")
    return a


def _expected_shape(f: SbsFile, hf_name: str, producer) -> tuple[int, ...]:
    """Shape of an HF tensor from the config alone (no decoding)."""
    cfg = f.config
    short = hf_name.split("layers.", 1)[-1] if "layers." in hf_name else hf_name
    D, V = cfg.model_dim, cfg.vocab_size
    if hf_name.endswith("embed_tokens.weight"):
        return (V, D)
    if hf_name.endswith(".norm.weight") and "layers." not in hf_name:
        return (D,)
    if "vision_model" in hf_name or "multi_modal_projector" in hf_name:
        vit = cfg.vit_config
        Dv = vit.model_dim
        if "encoder.layers." in hf_name:
            i = int(short.split(".", 1)[0])
            lc = vit.layer_configs[i]
            H, Dh, F = lc.heads, lc.qkv_dim, lc.ff_hidden_dim
            table = {"self_attn.q_proj.weight": (H * Dh, Dv), "self_attn.k_proj.weight": (H * Dh, Dv),
                     "self_attn.v_proj.weight": (H * Dh, Dv), "self_attn.q_proj.bias": (H * Dh,),
                     "self_attn.k_proj.bias": (H * Dh,), "self_attn.v_proj.bias": (H * Dh,),
                     "self_attn.out_proj.weight": (Dv, H * Dh), "self_attn.out_proj.bias": (Dv,),
                     "mlp.fc1.weight": (F, Dv), "mlp.fc1.bias": (F,), "mlp.fc2.weight": (Dv, F), "mlp.fc2.bias": (Dv,)}
            key = short.split(".", 1)[1]
            return table.get(key, (Dv,))
        P = vit.patch_width
        return {"post_layernorm.bias": (Dv,), "post_layernorm.weight": (Dv,), "embeddings.patch_embedding.bias": (Dv,),
                "embeddings.patch_embedding.weight": (Dv, 3, P, P),
                "embeddings.position_embedding.weight": (vit.seq_len, Dv),
                "mm_input_projection_weight": (Dv, D), "mm_soft_emb_norm.weight": (Dv,),
                "linear.weight": (D, Dv), "linear.bias": (D,)}[hf_name.split("vision_model.", 1)[-1]
                                                                .split("multi_modal_projector.", 1)[-1]]
    i = int(short.split(".", 1)[0])
    lc = cfg.layer_configs[i]
    H, K, Dh, F = lc.heads, lc.kv_heads, lc.qkv_dim, lc.ff_hidden_dim
    key = short.split(".", 1)[1]
    table = {"self_attn.q_proj.weight": (H * Dh, D), "self_attn.k_proj.weight": (K * Dh, D),
             "self_attn.v_proj.weight": (K * Dh, D), "self_attn.o_proj.weight": (D, H * Dh),
             "mlp.gate_proj.weight": (F, D), "mlp.up_proj.weight": (F, D), "mlp.down_proj.weight": (D, F),
             "self_attn.q_norm.weight": (Dh,), "self_attn.k_norm.weight": (Dh,)}
    return table.get(key, (D,))
