"""Hugging Face safetensors checkpoints of Gemma 2 / Gemma 3 (and PaliGemma 2) as a conversion source.

A checkpoint is a directory with ``config.json``, one or more
``*.safetensors`` files and usually ``tokenizer.model`` (or a single
``.safetensors`` file with ``config.json`` next to it). Supported
``model_type``: ``gemma2``, ``gemma3_text`` (Gemma3ForCausalLM: 270M, 1B),
``gemma3`` (Gemma3ForConditionalGeneration: 4B/12B/27B, text plus SigLIP
vision tower) and ``paligemma`` (PaliGemma 2).

Mapping, as gemma.cpp's Python exporter does it (spec §9): RMSNorm weights are
taken as stored (Hugging Face, like gemma.cpp, applies ``1 + w``);
``q/k/v_proj`` -> ``qkv_ein``, ``o_proj`` -> ``att_ein``, ``gate/up_proj``
-> ``gating_ein``, ``down_proj`` -> ``linear_w``; embedding rows beyond
gemma.cpp's vocabulary (Gemma 3: 262208 -> 262144, PaliGemma 2:
257216 -> 257152) are dropped. The vision tower maps to the ``enc_*``,
``img_*``, ``mm_embed_norm`` and per-layer ViT tensors of spec §5.3.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import canonical as C
from ..config import LayerConfig, ModelConfig, VitConfig
from ..tensors import TensorSpec
from . import ConvertError, names
from .safetensors_io import SafetensorsFile
from .source import Arch, Source, windows_from_pattern

#: transformers' defaults for fields a config.json may leave out.
GEMMA2_DEFAULTS = dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=8192,
                       query_pre_attn_scalar=256, sliding_window=4096, final_logit_softcapping=30.0,
                       attn_logit_softcapping=50.0, rope_theta=10000.0)
GEMMA3_TEXT_DEFAULTS = dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                            num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                            max_position_embeddings=131072, query_pre_attn_scalar=256, sliding_window=4096,
                            final_logit_softcapping=None, attn_logit_softcapping=None, rope_theta=1_000_000.0,
                            rope_local_base_freq=10_000.0, sliding_window_pattern=6)
SIGLIP_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       image_size=224, patch_size=16)

LM_PREFIXES = ("model.language_model.", "language_model.model.", "model.")
VISION_PREFIXES = ("model.vision_tower.vision_model.", "vision_tower.vision_model.")
PROJ_PREFIXES = ("model.multi_modal_projector.", "multi_modal_projector.")
LAYER_NORMS = {"pre_att_ns": "input_layernorm", "post_att_ns": "post_attention_layernorm",
               "pre_ff_ns": "pre_feedforward_layernorm", "post_ff_ns": "post_feedforward_layernorm",
               "query_norm": "self_attn.q_norm", "key_norm": "self_attn.k_norm"}


def _get(cfg: dict, defaults: dict, key: str):
    v = cfg.get(key)
    return defaults.get(key) if v is None and key not in cfg else v


class HfSource(Source):
    """A Hugging Face Gemma checkpoint directory (or one ``.safetensors`` file with ``config.json`` beside it)."""

    kind = "safetensors"

    def __init__(self, path) -> None:
        p = Path(path)
        self.dir = p if p.is_dir() else p.parent
        self.path = str(p)
        self.notes: list[str] = []
        files = sorted(self.dir.glob("*.safetensors")) if p.is_dir() else [p]
        cfg_path = self.dir / "config.json"
        if not p.is_dir() and not cfg_path.is_file():
            probe = SafetensorsFile(p)
            fmt = probe.metadata.get("format")
            probe.close()
            if fmt == "sbs-export":
                raise ConvertError(f"{p} was written by `sbs export` (gemma.cpp tensor names); convert needs a "
                                   "Hugging Face checkpoint — write one with `sbs export --hf`", code="unknown-format")
        if not cfg_path.is_file():
            raise ConvertError(f"{self.dir}: no config.json next to the safetensors files", code="bad-checkpoint")
        try:
            self.hf = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConvertError(f"{cfg_path}: unreadable ({e})", code="bad-checkpoint") from None
        self.files = [SafetensorsFile(f) for f in files]
        self.index: dict[str, SafetensorsFile] = {}
        for f in self.files:
            for n in f.entries:
                self.index.setdefault(n, f)
        self.lm = next((pre for pre in LM_PREFIXES if pre + "embed_tokens.weight" in self.index), None)
        if self.lm is None:
            self.close()
            raise ConvertError(f"{self.path}: no embed_tokens.weight under any of {LM_PREFIXES}",
                               code="missing-tensor")
        self.vis = next((pre for pre in VISION_PREFIXES
                         if pre + "embeddings.patch_embedding.weight" in self.index), None)
        self.proj = next((pre for pre in PROJ_PREFIXES if any(k.startswith(pre) for k in self.index)), None)
        self.arch = self._arch()

    # -- config ---------------------------------------------------------------------------------
    def _arch(self) -> Arch:
        hf = self.hf
        mt = hf.get("model_type", "")
        text = (hf.get("text_config") or {}) if mt in ("gemma3", "paligemma") else hf
        tmt = text.get("model_type", "gemma2" if mt == "paligemma" else "gemma3_text" if mt == "gemma3" else mt)
        if tmt not in ("gemma2", "gemma3_text"):
            raise ConvertError(f"{self.dir}: model_type {mt!r} (text {tmt!r}) is not supported; expected gemma2, "
                               "gemma3_text, gemma3 or paligemma", code="unsupported-arch")
        family = 2 if tmt == "gemma2" else 3
        dflt = GEMMA2_DEFAULTS if family == 2 else GEMMA3_TEXT_DEFAULTS
        g = lambda k: _get(text, dflt, k)  # noqa: E731
        L, D, H, K = int(g("num_hidden_layers")), int(g("hidden_size")), int(g("num_attention_heads")), \
            int(g("num_key_value_heads"))
        Dh = int(g("head_dim") or D // H)
        F = int(g("intermediate_size"))
        emb = self.index[self.lm + "embed_tokens.weight"].entries[self.lm + "embed_tokens.weight"]
        if len(emb.shape) != 2 or emb.shape[1] != D:
            raise ConvertError(f"{self.dir}: embed_tokens.weight {emb.shape} does not fit hidden_size {D}",
                               code="bad-checkpoint")
        window = int(g("sliding_window") or 0)
        layer_types = text.get("layer_types")
        if layer_types:
            if len(layer_types) != L:
                raise ConvertError(f"{self.dir}: layer_types has {len(layer_types)} entries for {L} layers",
                                   code="bad-checkpoint")
            windows = [window if t == "sliding_attention" else 0 for t in layer_types]
        else:
            pattern = 2 if family == 2 else int(g("sliding_window_pattern") or 6)
            windows = windows_from_pattern(L, window, pattern)
        qpas = g("query_pre_attn_scalar")
        qs = None
        if qpas is not None:
            if int(qpas) == Dh:
                qs = C.SQRT_KEY_SIZE
            elif int(qpas) == D // H:
                qs = C.SQRT_MODEL_DIM_DIV_NUM_HEADS
            else:
                self.notes.append(f"query_pre_attn_scalar {qpas} is neither head_dim nor hidden/heads; "
                                  "gemma.cpp can only scale by one of those")
        vit = self._vit(hf, mt) if self.vis else None
        name = str(hf.get("_name_or_path") or self.dir.name)
        hint, why = self._wrapping(name)
        if hf.get("sbs_wrapping") is not None:  # written by `sbs export --hf`
            try:
                hint, why = C.wrapping_enum(hf["sbs_wrapping"]), "config.json sbs_wrapping"
            except Exception:
                pass
        model_hint = None
        if hf.get("sbs_model"):
            try:
                model_hint = C.model_enum(hf["sbs_model"])
            except Exception:
                pass
        eos = text.get("eos_token_id")
        eos_ids = (int(eos[0]), int(eos[1])) if isinstance(eos, list) and len(eos) == 2 else None
        return Arch(
            family=family, num_layers=L, model_dim=D, vocab_size=emb.shape[0],
            max_seq_len=int(g("max_position_embeddings") or 0), heads=H, kv_heads=K, qkv_dim=Dh,
            ff_hidden_dim=[F] * L, windows=windows,
            att_cap=float(g("attn_logit_softcapping") or 0.0), final_cap=float(g("final_logit_softcapping") or 0.0),
            query_scale=qs, rope_global=g("rope_theta"), rope_local=text.get("rope_local_base_freq"),
            vit=vit, paligemma=mt == "paligemma", name=Path(name).name, wrapping_hint=hint, wrapping_reason=why,
            model_hint=model_hint, display_name=hf.get("sbs_display_name"), eos_ids=eos_ids)

    def _wrapping(self, name: str) -> tuple[int | None, str]:
        low = Path(name).name.lower()
        words = set(re.split(r"[-_. ]+", low))
        if words & {"it", "instruct", "chat"}:
            return C.GEMMA_IT, f"checkpoint name {Path(name).name!r} says instruction-tuned"
        return C.GEMMA_PT, f"checkpoint name {Path(name).name!r} names a base (pretrained) model"

    def _vit(self, hf: dict, mt: str) -> VitConfig:
        vc = {**SIGLIP_DEFAULTS, **(hf.get("vision_config") or {})}
        Dv, F, Lv, Hv = int(vc["hidden_size"]), int(vc["intermediate_size"]), int(vc["num_hidden_layers"]), \
            int(vc["num_attention_heads"])
        image, patch = int(vc["image_size"]), int(vc["patch_size"])
        side = image // patch
        pool = 1
        if mt == "gemma3":
            tokens = int(hf.get("mm_tokens_per_image", 256))
            pool = max(1, int(round(math.sqrt(side * side / tokens))))
        layer = LayerConfig(model_dim=Dv, ff_hidden_dim=F, heads=Hv, kv_heads=Hv, qkv_dim=Dv // Hv, ff_biases=True,
                            type=C.KVIT)
        return VitConfig(model_dim=Dv, seq_len=side * side, num_scales=4 * Lv, patch_width=patch, image_size=image,
                         layer_configs=[LayerConfig(**vars(layer)) for _ in range(Lv)], pool_dim=pool)

    # -- tokenizer ------------------------------------------------------------------------------------
    def tokenizer(self) -> bytes | None:
        tm = self.dir / "tokenizer.model"
        if tm.is_file():
            self.notes.append(f"tokenizer from {tm}")
            return tm.read_bytes()
        return None

    # -- tensors ----------------------------------------------------------------------------------------
    def _need(self, name: str) -> str:
        if name not in self.index:
            raise ConvertError(f"{self.dir}: tensor {name} is missing", code="missing-tensor", tensor=name)
        return name

    def _f32(self, name: str, start=None, stop=None) -> np.ndarray:
        return self.index[self._need(name)].f32(name, start, stop)

    def _sources(self, spec: TensorSpec) -> list[str]:
        lm, b = self.lm, f"{self.lm}layers.{spec.layer}."
        base = spec.base
        if spec.layer_type == "kVit":
            v = f"{self.vis}encoder.layers.{spec.layer}."
            return {
                "attn_out_w": [v + "self_attn.out_proj.weight"], "attn_out_b": [v + "self_attn.out_proj.bias"],
                "qkv_ein_w": [v + f"self_attn.{x}_proj.weight" for x in "qkv"],
                "qkv_ein_b": [v + f"self_attn.{x}_proj.bias" for x in "qkv"],
                "linear_0_w": [v + "mlp.fc1.weight"], "linear_0_b": [v + "mlp.fc1.bias"],
                "linear_1_w": [v + "mlp.fc2.weight"], "linear_1_b": [v + "mlp.fc2.bias"],
                "ln_0_bias": [v + "layer_norm1.bias"], "ln_0_scale": [v + "layer_norm1.weight"],
                "ln_1_bias": [v + "layer_norm2.bias"], "ln_1_scale": [v + "layer_norm2.weight"],
            }[base]
        if base in LAYER_NORMS:
            return [f"{b}{LAYER_NORMS[base]}.weight"]
        vis, proj = self.vis or "", self.proj or ""
        table = {
            "c_embedding": [lm + "embed_tokens.weight"], "c_final_norm": [lm + "norm.weight"],
            "qkv_ein": [b + f"self_attn.{x}_proj.weight" for x in "qkv"], "att_ein": [b + "self_attn.o_proj.weight"],
            "gating_ein": [b + "mlp.gate_proj.weight", b + "mlp.up_proj.weight"],
            "linear_w": [b + "mlp.down_proj.weight"],
            "enc_norm_bias": [vis + "post_layernorm.bias"], "enc_norm_scale": [vis + "post_layernorm.weight"],
            "img_emb_bias": [vis + "embeddings.patch_embedding.bias"],
            "img_emb_kernel": [vis + "embeddings.patch_embedding.weight"],
            "img_pos_emb": [vis + "embeddings.position_embedding.weight"],
            "mm_embed_norm": [proj + "mm_soft_emb_norm.weight"],
        }
        if base in ("img_head_kernel", "img_head_bias"):
            if proj + "mm_input_projection_weight" in self.index:  # Gemma 3: (Dv, D), no bias
                return [proj + "mm_input_projection_weight"] if base == "img_head_kernel" else []
            return [proj + ("linear.weight" if base == "img_head_kernel" else "linear.bias")]
        if base not in table:
            raise ConvertError(f"safetensors import has no source for gemma.cpp tensor {spec.name}",
                               code="missing-tensor", tensor=spec.name)
        return table[base]

    def has(self, spec: TensorSpec) -> bool:
        try:
            return all(n in self.index for n in self._sources(spec))
        except ConvertError:
            return False

    def get(self, spec: TensorSpec, config: ModelConfig) -> np.ndarray:
        src = self._sources(spec)
        base = spec.base
        if base == "c_embedding":
            out = self._f32(src[0], 0, spec.rows)
        elif spec.layer_type == "kVit":
            lc = config.vit_config.layer_configs[spec.layer]
            if base == "qkv_ein_w":
                out = names.vit_qkv_w(*(self._f32(n) for n in src), lc.heads)
            elif base == "qkv_ein_b":
                out = names.vit_qkv_b(*(self._f32(n) for n in src), lc.heads)
            else:
                out = self._f32(src[0])
                if out.ndim == 1:
                    out = names.row(out)
        elif spec.layer is not None and base in ("qkv_ein", "att_ein", "gating_ein"):
            lc = config.layer_configs[spec.layer]
            if base == "qkv_ein":
                out = names.qkv_ein(*(self._f32(n) for n in src), lc.heads, lc.kv_heads, lc.qkv_dim)
            elif base == "att_ein":
                out = names.att_ein(self._f32(src[0]), lc.heads, lc.qkv_dim)
            else:
                out = names.gating_ein(self._f32(src[0]), self._f32(src[1]))
        elif base == "img_emb_kernel":
            out = names.patch_kernel(self._f32(src[0]))
        elif base == "img_head_kernel":
            w = self._f32(src[0])
            out = np.ascontiguousarray(w.T) if src[0].endswith("mm_input_projection_weight") else w
        elif base == "img_head_bias" and not src:
            out = np.zeros((1, spec.cols), np.float32)
        else:
            out = self._f32(src[0])
            if out.ndim == 1:
                out = names.row(out)
        if out.shape != spec.shape:
            raise ConvertError(f"{spec.name} from {', '.join(src) or 'zeros'}: shape {out.shape}, gemma.cpp needs "
                               f"{spec.shape}", code="shape-mismatch", tensor=spec.name)
        return out

    def chunks(self, spec: TensorSpec, config: ModelConfig, rows: int) -> Iterator[np.ndarray] | None:
        if spec.base != "c_embedding":
            return None
        name = self._need(self._sources(spec)[0])

        def gen():
            for s in range(0, spec.rows, rows):
                yield self._f32(name, s, min(s + rows, spec.rows))
        return gen()

    def close(self) -> None:
        for f in getattr(self, "files", []):
            f.close()
