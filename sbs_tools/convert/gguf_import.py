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
from ..codecs import mxfp4, q4_0
from ..codecs.bf16 import bf16_bits
from ..errors import CodecError
from ..tensors import TensorSpec
from ..types import Type
from . import ConvertError, names, spm
from .gguf_file import GgufFile
from .source import Arch, Source, windows_from_pattern

SUPPORTED_ARCHS = {"gemma2": 2, "gemma3": 3}
#: gemma.cpp per-layer norm -> GGUF tensor (``blk.N.<name>.weight``); all stored as 1 + w.
LAYER_NORMS = {"pre_att_ns": "attn_norm", "post_att_ns": "post_attention_norm", "pre_ff_ns": "ffn_norm",
               "post_ff_ns": "post_ffw_norm", "query_norm": "attn_q_norm", "key_norm": "attn_k_norm"}
#: Every-n-th-layer-global pattern llama.cpp assumes when the file does not say.
DEFAULT_PATTERN = {2: 2, 3: 6}
#: gemma.cpp block type -> the ggml type (``GGMLQuantizationType``) whose blocks it can take over.
_GGML_BLOCK_TYPE = {Type.Q4_0: 2, Type.MXFP4: 39}
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
                          + ": dequantized to float32, unless their blocks are taken over (see below)")
        self._tokenizer: bytes | None = None
        self._tokenizer_done = False
        #: gemma.cpp type name -> [tensors, blocks, blocks whose values changed] of :meth:`blocks` imports.
        self.block_stats: dict[str, list[int]] = {}

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

    def _assemble(self, spec: TensorSpec, config: ModelConfig, load) -> np.ndarray:
        """The gemma.cpp tensor built from ``load(gguf_name[, start, stop])`` arrays (values or indices)."""
        src = self._sources(spec)
        base = spec.base
        if base == "c_embedding":
            return load(self._t(src[0]), 0, spec.rows)
        if base == "c_final_norm" or base in LAYER_NORMS:
            return names.row(load(self._t(src[0])).reshape(-1) - np.float32(1.0))
        lc = config.layer_configs[spec.layer]
        if base == "qkv_ein":
            return names.qkv_ein(*(load(self._t(n)) for n in src), lc.heads, lc.kv_heads, lc.qkv_dim)
        if base == "att_ein":
            return names.att_ein(load(self._t(src[0])), lc.heads, lc.qkv_dim)
        if base == "gating_ein":
            return names.gating_ein(load(self._t(src[0])), load(self._t(src[1])))
        return load(self._t(src[0]))

    def get(self, spec: TensorSpec, config: ModelConfig) -> np.ndarray:
        out = self._assemble(spec, config, self.g.dequantize)
        if out.shape != spec.shape:
            raise ConvertError(f"{spec.name} from {', '.join(self._sources(spec))}: shape {out.shape}, gemma.cpp "
                               f"needs {spec.shape}", code="shape-mismatch", tensor=spec.name)
        return out

    def blocks(self, spec: TensorSpec, config: ModelConfig, t: Type) -> bytes | None:
        """``spec`` as gemma.cpp ``t`` (Q4_0/MXFP4) blocks taken from the GGUF's own blocks, or None.

        Possible when every source tensor is stored in the matching ggml type (Q4_0 for Q4_0,
        MXFP4 for MXFP4) and the name mapping moves whole 32-value blocks (it is
        a permutation of values; found by applying it to value indices). Q4_0: the
        fp16 scale becomes bf16 (round to nearest even), which changes the values of
        a block unless the scale is exactly a bf16 or every nibble is 8. MXFP4: the
        layouts are identical (E8M0 byte + 16 nibble bytes, value j in the low nibble
        of byte j, j+16 in the high); gemma.cpp decodes exponent 0x00 and 0xFF as
        scale 0 where ggml uses 2**-127 and 2**128, so such blocks are re-encoded from
        ggml's values with gemma.cpp's encoder instead. Changed blocks are counted in
        :attr:`block_stats`.
        """
        want = _GGML_BLOCK_TYPE.get(Type(t))
        if want is None or spec.base == "c_final_norm" or spec.base in LAYER_NORMS:
            return None
        src = self._sources(spec)
        if not all(n in self.g.tensors and self.g.tensors[n].ggml_type == want for n in src):
            return None
        starts, total = {}, 0
        for n in src:
            starts[n] = total
            total += self.g.tensors[n].rows * self.g.tensors[n].cols
        dt = np.int32 if total < 2 ** 31 else np.int64

        def index(name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
            gt = self.g.tensors[name]
            stop = gt.rows if stop is None else min(stop, gt.rows)
            base = starts[name] + start * gt.cols
            return np.arange(base, base + (stop - start) * gt.cols, dtype=dt).reshape(-1, gt.cols)

        idx = self._assemble(spec, config, index)
        if idx.shape != spec.shape or idx.size % 32:
            return None
        first = idx.reshape(-1, 32)[:, 0]
        if (first % 32).any() or not (idx.reshape(-1, 32) == first[:, None] + np.arange(32, dtype=dt)).all():
            return None  # the mapping splits blocks
        del idx
        raw = np.concatenate([self.g.raw(n).reshape(-1) for n in src]).reshape(-1, 18 if t == Type.Q4_0 else 17)
        blk = raw[first // 32]
        del first, raw
        if t == Type.Q4_0:
            out, changed = _q4_0_from_ggml(blk, spec.name)
        else:
            out, changed = _mxfp4_from_ggml(blk, spec.name)
        st = self.block_stats.setdefault(Type(t).name, [0, 0, 0])
        st[0] += 1
        st[1] += blk.shape[0]
        st[2] += changed
        return out.tobytes()

    def block_notes(self) -> list[str]:
        notes = []
        for name, (tensors, blocks, changed) in self.block_stats.items():
            if name == "Q4_0":
                how = ("the fp16 block scales became bf16 (lossy: 3 mantissa bits; round to nearest even), "
                       f"which changed the values of {changed} of {blocks} blocks against gguf's dequantization")
            else:
                how = ("the layouts are identical; " + (f"{changed} of {blocks} blocks had exponent 0x00/0xFF, "
                       "which gemma.cpp decodes as scale 0, and were re-encoded from gguf's values"
                       if changed else f"all {blocks} blocks copied exactly"))
            notes.append(f"{tensors} {name} tensors imported block for block from the GGUF's {name} blocks: {how}")
        return notes

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


def _q4_0_from_ggml(blk: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """ggml ``block_q4_0`` (fp16 ``d``, 16 nibble bytes) -> gemma.cpp Q4_0 (bf16 ``d``, the same nibbles).

    Returns the (B, 18) blocks and how many blocks decode to other values than ggml's."""
    d16 = blk[:, :2].copy().view("<f2").reshape(-1)
    d32 = d16.astype(np.float32)
    if not np.isfinite(d32).all():
        raise CodecError(f"tensor {name}: a GGUF Q4_0 block scale is NaN/Inf", code="non-finite", tensor=name)
    bits = bf16_bits(d32)
    out = np.empty((blk.shape[0], q4_0.BLOCK_BYTES), dtype=np.uint8)
    out[:, 0] = bits & 0xFF
    out[:, 1] = bits >> 8
    out[:, 2:] = blk[:, 2:]
    moved = (bits.astype(np.uint32) << 16).view(np.float32) != d32
    changed = int((moved & (blk[:, 2:] != 0x88).any(axis=1)).sum())
    return out, changed


def _mxfp4_from_ggml(blk: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """ggml ``block_mxfp4`` -> gemma.cpp MXFP4: the same bytes, except blocks whose exponent gemma.cpp reads
    as scale 0 (0x00, 0xFF) while ggml does not; those are re-encoded from ggml's values when any is nonzero."""
    from gguf import GGMLQuantizationType, quants

    out = np.ascontiguousarray(blk, dtype=np.uint8)
    e = out[:, 0]
    odd = np.nonzero(((e == 0) | (e == 0xFF)) & ((out[:, 1:] & 0x77) != 0).any(axis=1))[0]
    if odd.size:
        with np.errstate(over="ignore"):
            vals = np.asarray(quants.dequantize(out[odd], GGMLQuantizationType.MXFP4), np.float32).reshape(-1)
        if not np.isfinite(vals).all():
            raise CodecError(f"tensor {name}: a GGUF MXFP4 block decodes to Inf", code="non-finite", tensor=name)
        out = out.copy()
        out[odd] = np.frombuffer(mxfp4.encode(vals), dtype=np.uint8).reshape(-1, mxfp4.BLOCK_BYTES)
    return out, int(odd.size)
