"""GGUF (llama.cpp) Gemma 2 / Gemma 3 checkpoints as a conversion :class:`~.source.Source` (spec §12).

Every tensor is dequantized to float32 with the ``gguf`` package (any type it
implements: F32/F16/BF16, Q4_0 … Q8_0, the K-quants, IQ types). Names map as

================================== ============================== ======================
GGUF                               gemma.cpp                      transform
================================== ============================== ======================
``token_embd.weight``              ``c_embedding``                none (tied output)
``output_norm.weight``             ``c_final_norm``               subtract 1
``blk.N.attn_norm.weight``         ``pre_att_ns_N``               subtract 1
``blk.N.post_attention_norm``      ``post_att_ns_N``              subtract 1
``blk.N.ffn_norm.weight``          ``pre_ff_ns_N``                subtract 1
``blk.N.post_ffw_norm.weight``     ``post_ff_ns_N``               subtract 1
``blk.N.attn_{q,k}_norm.weight``   ``query_norm_N``/``key_norm_N`` subtract 1
``attn_q``/``attn_k``/``attn_v``   ``qkv_ein_N``                  q heads, then k,v per kv head
``attn_output``                    ``att_ein_N``                  (D,H,Dh) -> (H,D,Dh)
``ffn_gate``, ``ffn_up``           ``gating_ein_N``               stacked
``ffn_down``                       ``linear_w_N``                 none
================================== ============================== ======================

llama.cpp's converter adds 1 to every Gemma ``*norm.weight`` (Hugging Face's
RMSNorm multiplies by ``1 + w``; so does gemma.cpp, which stores the raw
``w``), hence "subtract 1". Neither side permutes q/k rows: both use
half-split RoPE.

The config comes from the ``{arch}.*`` metadata (GGUF does not record Gemma
3's local/global pattern, which llama.cpp fixes at every 6th layer global,
nor the query scaling, which it derives from the model size); the tokenizer
is rebuilt from ``tokenizer.ggml.*`` by :mod:`.spm`.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterator

import numpy as np

from .. import canonical as C
from ..config import ModelConfig
from ..tensors import TensorSpec
from . import ConvertError, names, spm
from .gguf_file import GgufFile
from .source import Arch, Source, windows_from_pattern

SUPPORTED_ARCHS = {"gemma2": 2, "gemma3": 3}
#: gemma.cpp per-layer norm -> GGUF tensor (``blk.N.<name>.weight``); all stored as 1 + w.
LAYER_NORMS = {"pre_att_ns": "attn_norm", "post_att_ns": "post_attention_norm", "pre_ff_ns": "ffn_norm",
               "post_ff_ns": "post_ffw_norm", "query_norm": "attn_q_norm", "key_norm": "attn_k_norm"}
#: Every-n-th-layer-global pattern llama.cpp assumes when the file does not say.
DEFAULT_PATTERN = {2: 2, 3: 6}
_IT = re.compile(r"(^|[-_ .])(it|instruct|chat)($|[-_ .])", re.I)


class GgufSource(Source):
    """A Gemma 2/3 GGUF file. ``notes`` collects what the conversion had to decide or fix."""

    kind = "gguf"

    def __init__(self, path) -> None:
        self.g = GgufFile(path)
        self.path = self.g.path
        self.notes: list[str] = []
        arch_name = self.g.architecture
        if arch_name not in SUPPORTED_ARCHS:
            self.g.close()
            hint = " (Gemma 1 is no longer supported by gemma.cpp)" if arch_name == "gemma" else ""
            raise ConvertError(f"{self.path}: GGUF architecture {arch_name!r} is not supported; "
                               f"expected one of {sorted(SUPPORTED_ARCHS)}{hint}", code="unsupported-arch")
        self.arch = self._arch(arch_name)
        qtypes = Counter(t.type_name for t in self.g.tensors.values())
        self.notes.append("GGUF tensors " + ", ".join(f"{k} x{v}" for k, v in qtypes.most_common())
                          + ": dequantized to float32")
        self._tokenizer: bytes | None = None
        self._tokenizer_done = False

    # -- config --------------------------------------------------------------------------
    def _meta(self, key: str, default=None, *, required: bool = False):
        full = f"{self.g.architecture}.{key}"
        if full not in self.g.metadata:
            if required:
                raise ConvertError(f"{self.path}: GGUF metadata {full} is missing", code="bad-checkpoint")
            return default
        return self.g.metadata[full]

    def _arch(self, arch_name: str) -> Arch:
        family = SUPPORTED_ARCHS[arch_name]
        L = int(self._meta("block_count", required=True))
        D = int(self._meta("embedding_length", required=True))
        H = self._scalar("attention.head_count", required=True)
        K = self._scalar("attention.head_count_kv", H)
        Dh = int(self._meta("attention.key_length", D // H))
        Dv = int(self._meta("attention.value_length", Dh))
        if Dv != Dh:
            raise ConvertError(f"{self.path}: key length {Dh} != value length {Dv}; gemma.cpp needs them equal",
                               code="unsupported-arch")
        ff = self._meta("feed_forward_length", required=True)
        ffs = [int(x) for x in np.asarray(ff).reshape(-1)] if np.ndim(ff) else [int(ff)] * L
        if len(ffs) != L:
            raise ConvertError(f"{self.path}: feed_forward_length has {len(ffs)} entries for {L} layers",
                               code="bad-checkpoint")
        emb = self.g.tensors.get("token_embd.weight")
        if emb is None:
            raise ConvertError(f"{self.path}: no token_embd.weight", code="missing-tensor")
        if emb.cols != D:
            raise ConvertError(f"{self.path}: token_embd.weight has {emb.cols} columns, embedding_length is {D}",
                               code="bad-checkpoint")
        ctx = int(self._meta("context_length", 8192 if family == 2 else 32768))
        window = int(self._meta("attention.sliding_window", 0) or 0)
        pattern = self._meta("attention.sliding_window_pattern")
        if pattern is None:
            windows = windows_from_pattern(L, window, DEFAULT_PATTERN[family])
        elif np.ndim(pattern):  # per-layer booleans: True = sliding window
            flags = [bool(x) for x in np.asarray(pattern).reshape(-1)]
            if len(flags) != L:
                raise ConvertError(f"{self.path}: sliding_window_pattern has {len(flags)} entries for {L} layers",
                                   code="bad-checkpoint")
            windows = [window if f else 0 for f in flags]
        else:
            windows = windows_from_pattern(L, window, int(pattern))
        eps = self._meta("attention.layer_norm_rms_epsilon")
        if eps is not None and abs(float(eps) - 1e-6) > 1e-9:
            self.notes.append(f"the GGUF says RMSNorm epsilon {eps:g}; gemma.cpp always uses 1e-6")
        name = str(self.g.metadata.get("general.name", "") or "")
        finetune = str(self.g.metadata.get("general.finetune", "") or "")
        hint, why = None, ""
        if _IT.search(finetune) or _IT.search(name):
            hint, why = C.GEMMA_IT, f"GGUF name {name!r} / finetune {finetune!r} says instruction-tuned"
        elif name or finetune:
            hint, why = C.GEMMA_PT, f"GGUF name {name!r} names a base (pretrained) model"
        return Arch(
            family=family, num_layers=L, model_dim=D, vocab_size=emb.rows, max_seq_len=ctx, heads=H, kv_heads=K,
            qkv_dim=Dh, ff_hidden_dim=ffs, windows=windows,
            att_cap=float(self._meta("attn_logit_softcapping", 0.0) or 0.0),
            final_cap=float(self._meta("final_logit_softcapping", 0.0) or 0.0),
            query_scale=None, rope_global=self._meta("rope.freq_base"), name=name.replace(" ", "_"),
            wrapping_hint=hint, wrapping_reason=why)

    def _scalar(self, key: str, default=None, *, required: bool = False) -> int:
        v = self._meta(key, default, required=required)
        arr = np.asarray(v).reshape(-1)
        if arr.size > 1 and not (arr == arr[0]).all():
            raise ConvertError(f"{self.path}: {key} differs between layers; gemma.cpp needs one value",
                               code="unsupported-arch")
        return int(arr[0])

    # -- tokenizer ---------------------------------------------------------------------------
    def tokenizer(self) -> bytes | None:
        if self._tokenizer_done:
            return self._tokenizer
        self._tokenizer_done = True
        md = self.g.metadata
        tokens = md.get("tokenizer.ggml.tokens")
        if not tokens:
            self.notes.append("the GGUF carries no tokenizer")
            return None
        build = spm.build_from_gguf(
            tokens, md.get("tokenizer.ggml.scores"), md.get("tokenizer.ggml.token_type"),
            unk_id=int(md.get("tokenizer.ggml.unknown_token_id", 3)),
            bos_id=int(md.get("tokenizer.ggml.bos_token_id", 2)),
            eos_id=int(md.get("tokenizer.ggml.eos_token_id", 1)),
            pad_id=int(md.get("tokenizer.ggml.padding_token_id", 0)),
            add_space_prefix=bool(md.get("tokenizer.ggml.add_space_prefix", False)),
            model=str(md.get("tokenizer.ggml.model", "llama")))
        self.notes.append(f"tokenizer rebuilt from GGUF ({build.vocab_size} pieces): " + "; ".join(build.fixes)
                          if build.fixes else f"tokenizer rebuilt from GGUF ({build.vocab_size} pieces)")
        self._tokenizer = build.proto
        return build.proto

    # -- tensors ---------------------------------------------------------------------------------
    def _t(self, name: str) -> str:
        if name not in self.g.tensors:
            raise ConvertError(f"{self.path}: GGUF tensor {name} is missing", code="missing-tensor", tensor=name)
        return name

    def _deq(self, name: str) -> np.ndarray:
        return self.g.dequantize(self._t(name))

    def _sources(self, spec: TensorSpec) -> list[str]:
        b = f"blk.{spec.layer}."
        table = {
            "c_embedding": ["token_embd.weight"], "c_final_norm": ["output_norm.weight"],
            "qkv_ein": [b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"],
            "att_ein": [b + "attn_output.weight"], "gating_ein": [b + "ffn_gate.weight", b + "ffn_up.weight"],
            "linear_w": [b + "ffn_down.weight"],
        }
        if spec.base in LAYER_NORMS:
            return [f"{b}{LAYER_NORMS[spec.base]}.weight"]
        if spec.base not in table:
            raise ConvertError(f"GGUF import has no source for gemma.cpp tensor {spec.name}", code="missing-tensor",
                               tensor=spec.name)
        return table[spec.base]

    def has(self, spec: TensorSpec) -> bool:
        try:
            return all(n in self.g.tensors for n in self._sources(spec))
        except ConvertError:
            return False

    def get(self, spec: TensorSpec, config: ModelConfig) -> np.ndarray:
        src = self._sources(spec)
        base = spec.base
        if base == "c_embedding":
            out = self.g.dequantize(self._t(src[0]), 0, spec.rows)
        elif base == "c_final_norm" or base in LAYER_NORMS:
            out = names.row(self._deq(src[0]).reshape(-1) - np.float32(1.0))
        else:
            lc = config.layer_configs[spec.layer]
            if base == "qkv_ein":
                out = names.qkv_ein(*(self._deq(n) for n in src), lc.heads, lc.kv_heads, lc.qkv_dim)
            elif base == "att_ein":
                out = names.att_ein(self._deq(src[0]), lc.heads, lc.qkv_dim)
            elif base == "gating_ein":
                out = names.gating_ein(self._deq(src[0]), self._deq(src[1]))
            else:
                out = self._deq(src[0])
        if out.shape != spec.shape:
            raise ConvertError(f"{spec.name} from {', '.join(src)}: shape {out.shape}, gemma.cpp needs {spec.shape}",
                               code="shape-mismatch", tensor=spec.name)
        return out

    def chunks(self, spec: TensorSpec, config: ModelConfig, rows: int) -> Iterator[np.ndarray] | None:
        if spec.base != "c_embedding":
            return None
        name = self._t("token_embd.weight")

        def gen():
            for s in range(0, spec.rows, rows):
                yield self.g.dequantize(name, s, min(s + rows, spec.rows))
        return gen()

    def close(self) -> None:
        self.g.close()
