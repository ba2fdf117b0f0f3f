"""Tiny synthetic Gemma checkpoints (Hugging Face safetensors and GGUF) for tests, fuzzing and demos.

:func:`random_weights` draws a random network in Hugging Face names and
layouts; :func:`write_hf` writes it as a checkpoint directory and
:func:`write_gguf` as a llama.cpp-style GGUF (norms stored as ``1 + w``,
``{arch}.*`` metadata, optional quantization, tokenizer arrays with the same
rewrites llama.cpp applies to Gemma vocabularies). Converting both must give
the same gemma.cpp tensors.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import spm


@dataclass(frozen=True)
class TinySpec:
    family: int = 3  # 2: Gemma 2, 3: Gemma 3 (QK norm)
    layers: int = 2
    model_dim: int = 32
    heads: int = 2
    kv_heads: int = 1
    qkv_dim: int = 16
    ff: int = 64
    vocab: int = 256
    max_seq_len: int = 128
    window: int = 8
    pattern: int = 0  # every n-th layer global; 0: the family's (2 for Gemma 2, 6 for Gemma 3)
    name: str = "tiny-gemma"

    @property
    def every(self) -> int:
        return self.pattern or (2 if self.family == 2 else 6)

    def is_global(self, i: int) -> bool:
        return i % self.every == self.every - 1


HF_NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
            "post_feedforward_layernorm")
#: Hugging Face per-layer suffix -> GGUF per-layer name (llama.cpp ``gemma2``/``gemma3`` tensor map).
HF_TO_GGUF = {
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def random_weights(spec: TinySpec, seed: int = 0, scale: float = 0.2) -> dict[str, np.ndarray]:
    """A random network in Hugging Face names (``model.*``) and layouts, float32."""
    rng = np.random.default_rng(seed)
    D, H, K, Dh, F = spec.model_dim, spec.heads, spec.kv_heads, spec.qkv_dim, spec.ff

    def r(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = {"model.embed_tokens.weight": r(spec.vocab, D), "model.norm.weight": r(D)}
    for i in range(spec.layers):
        b = f"model.layers.{i}."
        w[b + "self_attn.q_proj.weight"] = r(H * Dh, D)
        w[b + "self_attn.k_proj.weight"] = r(K * Dh, D)
        w[b + "self_attn.v_proj.weight"] = r(K * Dh, D)
        w[b + "self_attn.o_proj.weight"] = r(D, H * Dh)
        if spec.family == 3:
            w[b + "self_attn.q_norm.weight"] = r(Dh)
            w[b + "self_attn.k_norm.weight"] = r(Dh)
        for n in HF_NORMS:
            w[b + n + ".weight"] = r(D)
        w[b + "mlp.gate_proj.weight"] = r(F, D)
        w[b + "mlp.up_proj.weight"] = r(F, D)
        w[b + "mlp.down_proj.weight"] = r(D, F)
    return w


def hf_config(spec: TinySpec) -> dict:
    g3 = spec.family == 3
    cfg = {
        "model_type": "gemma3_text" if g3 else "gemma2",
        "architectures": ["Gemma3ForCausalLM" if g3 else "Gemma2ForCausalLM"],
        "_name_or_path": spec.name, "hidden_size": spec.model_dim, "intermediate_size": spec.ff,
        "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads, "head_dim": spec.qkv_dim, "vocab_size": spec.vocab,
        "max_position_embeddings": spec.max_seq_len, "sliding_window": spec.window,
        "layer_types": ["full_attention" if spec.is_global(i) else "sliding_attention" for i in range(spec.layers)],
        "query_pre_attn_scalar": spec.qkv_dim, "rms_norm_eps": 1e-6,
        "attn_logit_softcapping": None if g3 else 50.0, "final_logit_softcapping": None if g3 else 30.0,
    }
    return cfg


def write_hf(directory: str | os.PathLike, spec: TinySpec, weights: dict[str, np.ndarray], *,
             dtype: str = "F32", tokenizer: bytes | None = None, shards: int = 1, overwrite: bool = False) -> Path:
    """Write a checkpoint directory: config.json, model(-0000i-of-n).safetensors, tokenizer.model
    (through the output policy: a non-empty directory only with ``overwrite``)."""
    from ..output import check_output_dir, make_output_dir, write_file
    from .safetensors_io import DTYPES, StItem, write_safetensors

    d = Path(directory)
    names = ["config.json", "tokenizer.model"] + (
        ["model.safetensors"] if shards == 1 else [f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
                                                   for k in range(shards)])
    check_output_dir(d, names, force=overwrite)
    make_output_dir(d)
    write_file(d / "config.json", json.dumps(hf_config(spec), indent=1))
    np_dtype = DTYPES[dtype]

    def stored(a: np.ndarray) -> np.ndarray:
        if dtype == "BF16":  # no numpy bfloat16: its bit patterns, rounded to nearest even
            from ..codecs.bf16 import bf16_bits

            return bf16_bits(np.asarray(a, dtype=np.float32)).reshape(a.shape)
        if dtype in ("F8_E4M3", "F8_E5M2"):
            raise ValueError(f"writing {dtype} is not supported")
        return np.ascontiguousarray(a.astype(np_dtype))
    names = list(weights)
    parts = [names[i::shards] for i in range(shards)]
    for k, part in enumerate(parts):
        items = [StItem(n, dtype, weights[n].shape, lambda a=weights[n]: [stored(a)])
                 for n in part]
        fname = "model.safetensors" if shards == 1 else f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(d / fname, items, {"format": "pt"})
    if tokenizer:
        write_file(d / "tokenizer.model", tokenizer)
    return d


def gguf_vocab_from_spm(proto: bytes) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(tokens, scores, token_type) the way llama.cpp's converter stores a Gemma SentencePiece model:
    the unknown piece marked CONTROL, ``<start_of_turn>``/``<end_of_turn>`` CONTROL, and pieces made of
    U+2581 whitespace written with plain spaces."""
    import sentencepiece as sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        t = (spm.BYTE if sp.is_byte(i) else spm.UNKNOWN if sp.is_unknown(i) else spm.CONTROL if sp.is_control(i)
             else spm.UNUSED if sp.is_unused(i) else spm.NORMAL)
        if t == spm.UNKNOWN or p in spm.CHAT_PIECES:
            t = spm.CONTROL
        if p and set(p) == {spm.SPACE} and len(p) > 1:
            p = p.replace(spm.SPACE, " ")
        tokens.append(p)
        scores.append(sp.get_score(i))
        types.append(t)
    return tokens, np.asarray(scores, np.float32), np.asarray(types, np.int32)


def write_gguf(path: str | os.PathLike, spec: TinySpec, weights: dict[str, np.ndarray], *, qtype: str = "F32",
               vocab: tuple[list[str], np.ndarray, np.ndarray] | None = None, name: str | None = None,
               finetune: str | None = None, overwrite: bool = False) -> Path:
    """Write ``weights`` (Hugging Face names) as a llama.cpp-style GGUF of architecture gemma2/gemma3
    (through the output policy: an existing ``path`` only with ``overwrite``; temp file + rename).

    ``qtype``: F32, F16 or any type ``gguf.quants.quantize`` supports (e.g. Q8_0; needs
    ``model_dim``/``ff``/``qkv_dim`` multiples of the block size). Norms are stored as ``1 + w`` in F32.
    """
    import gguf

    from ..output import PendingFile, check_output_file

    arch = "gemma3" if spec.family == 3 else "gemma2"
    check_output_file(path, force=overwrite)
    with PendingFile(path) as pending:
        _fill_gguf(gguf.GGUFWriter(pending.path, arch), arch, spec, weights, qtype, vocab, name, finetune)
    return Path(path)


def _fill_gguf(w, arch: str, spec: TinySpec, weights: dict[str, np.ndarray], qtype: str,
               vocab: tuple[list[str], np.ndarray, np.ndarray] | None, name: str | None,
               finetune: str | None) -> None:
    """Everything :func:`write_gguf` puts into the GGUFWriter ``w`` (which writes to the pending file)."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    w.add_string("general.name", name if name is not None else spec.name)
    if finetune:
        w.add_string("general.finetune", finetune)
    a = arch + "."
    for key, val in (("context_length", spec.max_seq_len), ("embedding_length", spec.model_dim),
                     ("block_count", spec.layers), ("feed_forward_length", spec.ff),
                     ("attention.head_count", spec.heads), ("attention.head_count_kv", spec.kv_heads),
                     ("attention.key_length", spec.qkv_dim), ("attention.value_length", spec.qkv_dim),
                     ("attention.sliding_window", spec.window)):
        w.add_uint32(a + key, val)
    w.add_float32(a + "attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32(a + "rope.freq_base", 1e6 if spec.family == 3 else 1e4)
    if spec.family == 2:
        w.add_float32(a + "attn_logit_softcapping", 50.0)
        w.add_float32(a + "final_logit_softcapping", 30.0)
    if spec.pattern and spec.pattern != (2 if spec.family == 2 else 6):
        w.add_uint32(a + "attention.sliding_window_pattern", spec.pattern)
    if vocab is not None:
        tokens, scores, types = vocab
        w.add_string("tokenizer.ggml.model", "llama")
        w.add_array("tokenizer.ggml.tokens", list(tokens))
        w.add_array("tokenizer.ggml.scores", [float(s) for s in scores])
        w.add_array("tokenizer.ggml.token_type", [int(t) for t in types])
        for key, v in (("bos_token_id", 2), ("eos_token_id", 1), ("unknown_token_id", 3), ("padding_token_id", 0)):
            w.add_uint32("tokenizer.ggml." + key, v)
        w.add_bool("tokenizer.ggml.add_space_prefix", False)

    def put(gname: str, x: np.ndarray, norm: bool) -> None:
        if norm:
            w.add_tensor(gname, (x + np.float32(1.0)).astype(np.float32))
        elif qtype == "F32":
            w.add_tensor(gname, x.astype(np.float32))
        elif qtype == "F16":
            w.add_tensor(gname, x.astype(np.float16))
        else:
            qt = Q[qtype]
            w.add_tensor(gname, gguf.quants.quantize(x.astype(np.float32), qt), raw_dtype=qt)

    put("token_embd.weight", weights["model.embed_tokens.weight"], False)
    put("output_norm.weight", weights["model.norm.weight"], True)
    for i in range(spec.layers):
        b = f"model.layers.{i}."
        for hf, g in HF_TO_GGUF.items():
            if b + hf in weights:
                put(f"blk.{i}.{g}", weights[b + hf], hf.endswith("norm.weight"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
