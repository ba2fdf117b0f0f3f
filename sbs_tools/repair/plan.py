"""Findings + facts -> actions: decide what a repair does, without writing anything.

:func:`make_plan` takes the :class:`~.analyze.Analysis` of the input, the
``sbs verify`` findings for it and the options, and returns a :class:`Plan`:
the output :class:`~.actions.State` to write, the actions that produce it,
the refusals that block it, and for every finding what happens to it
("fix" with the action, "keep" with the reason, "cannot-fix" with the reason).
It performs no I/O (the analysis holds a read-only map of the input).

Guiding rule: repair never changes a tensor's bytes. It moves bytes to where
gemma.cpp expects them, rewrites metadata that is wrong when the bytes or the
rest of the metadata determine the right value, and drops only blobs that are
exact duplicates or redundant by gemma.cpp's own rules. Anything else is a
refusal with the reason.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..config import VIT_TYPE, ModelConfig
from ..errors import SbsError
from ..sbsfile import METADATA_KEYS
from ..tensors import VIT_LAYER_BASES, by_name, choices, expected_tensors, split_name
from ..types import Type, packed_bytes, type_name
from ..verify.findings import Finding
from .actions import (Action, OutBlob, Refusal, State, fix_record_fields, inferred_scale, plain_itemsize,
                      types_for_size, weight_type)
from .analyze import SCALES_KEYS, Analysis, sha256, strip_prefix
from .targets import Target, get_target

PLACEMENT = ("blob-misaligned", "blob-gap", "blob-overlap", "blob-out-of-bounds", "zero-size-blob")
REWRITE_FIXES = ("file-size-mismatch", "end-not-aligned", "nonzero-padding", "bad-placeholder")
#: Why a finding that no action addresses stays (warnings/infos) or blocks (errors).
KEEP_REASONS = {
    "v1-end-padded": "informational: current gemma.cpp reads 64 KiB-padded V1 files (use --target pre-2025 to "
                     "end the file after the last blob)",
    "config-extra-fields": "written by a newer gemma.cpp; the fields are kept as they are",
    "config-missing-fields": "older writer; gemma.cpp uses the defaults, which is what it always did",
    "pre-2025-format": "current gemma.cpp still reads pre-2025 files; migrate with --target current "
                       "(plus --config-from/--model when the model cannot be deduced, and --tokenizer)",
    "tokenizer-missing": "no tokenizer to embed: pass --tokenizer FILE.spm",
    "unexpected-tensor": "gemma.cpp ignores it; repair keeps every tensor (drop it with --drop-unused)",
    "blob-not-in-toc": "gemma.cpp ignores it; repair keeps it (drop it with --drop-unused)",
    "scale-ignored": "gemma.cpp ignores the scale of norms/biases; changing it would alter what other tools "
                     "decode, and the right value cannot be known",
    "runtime-unsupported": "running it needs the tensors re-encoded to another type; repair never re-encodes",
    "legacy-only": "the file is kept for the gemma.cpp generation that reads it; pass --target current to "
                   "convert it",
    "all-zero": "tensor values are never changed by repair",
    "sfp-noncanonical": "tensor values are never changed by repair",
    "norm-suspicious": "tensor values are never changed by repair",
    "deep-skipped": "informational",
    "scales-extra": "the extra scales are kept as they are",
}
CANNOT_REASONS = {
    "unloadable": "no repair rule makes any gemma.cpp generation accept it (see the compatibility reasons)",
    "not-sbs": "not a gemma.cpp weight file: there is nothing to repair",
    "io-error": "the file cannot be read",
    "missing-tensor": "the tensor's bytes are not in the file and cannot be recreated from the other tensors; "
                      "re-export the layer (--force writes a partial file that verify still flags)",
    "shape-mismatch": "the blob's size does not tell which of the toc and the config is right",
    "type-unsupported": "fixing it would mean re-encoding the tensor, which repair never does",
    "vocab-mismatch": "the tokenizer does not match the model; embed the right one with --tokenizer",
    "non-finite": "tensor values are corrupt; repair never changes tensor values",
    "nuq-table-invalid": "tensor values are corrupt; repair never changes tensor values",
    "scale-invalid": "the tensor's scale is lost and its bytes do not determine it",
    "too-many-blobs": "the header is corrupt: the directory cannot be located",
    "directory-out-of-bounds": "the header is corrupt: the directory cannot be located",
    "empty-store": "the header is corrupt: the store claims to hold no blobs",
    "bad-magic": "the directory cannot be located",
    "config-undecodable": "the config cannot be decoded: pass --config-from OTHER.sbs or --model NAME",
    "config-invalid": "the config holds values repair cannot determine: pass --config-from OTHER.sbs or "
                      "--model NAME",
    "tokenizer-invalid": "the embedded tokenizer is damaged: pass --tokenizer FILE.spm",
}


@dataclass
class Options:
    """Repair options (see :func:`sbs_tools.repair.repair`)."""

    target: str | None = None
    layout: str | None = None
    tokenizer: bytes | None = None
    tokenizer_path: str | None = None
    config: ModelConfig | None = None  # from --config-from / --model
    config_source: str | None = None
    drop_duplicates: str | None = None  # "first" | "last"
    drop_unused: bool = False
    force: bool = False


@dataclass
class PlanItem:
    """What happens to one finding of the input."""

    finding: Finding
    status: str  # "fix" | "keep" | "cannot-fix" | "info"
    action: Action | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        d = {"finding": self.finding.to_dict(), "status": self.status, "reason": self.reason}
        if self.action is not None:
            d["action"] = self.action.kind
        return d


@dataclass
class ProofEntry:
    """One input tensor (or other data blob) and what became of it."""

    input_key: str
    output_key: str | None  # None: dropped
    src: tuple[int, int] | None  # input byte range holding its bytes
    note: str = ""
    transform: str | None = None  # the output bytes are derived (concat/transposed), not copied
    kind: str = "tensor"


@dataclass
class Plan:
    path: str
    target: Target | None
    options: Options
    findings: list[Finding]
    items: list[PlanItem] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    state: State | None = None
    proof: list[ProofEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def blocking(self) -> list[Refusal]:
        return [r for r in self.refusals if not (r.forceable and self.options.force)]

    @property
    def repairable(self) -> bool:
        return self.state is not None and not self.blocking

    @property
    def nothing_to_do(self) -> bool:
        return not self.actions and not self.refusals

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "target": self.target.key if self.target else "auto",
            "repairable": self.repairable,
            "nothing_to_repair": self.nothing_to_do,
            "items": [i.to_dict() for i in self.items],
            "actions": [a.to_dict() for a in self.actions],
            "refusals": [r.to_dict() for r in self.refusals],
            "notes": list(self.notes),
            "output": None if self.state is None else {
                "layout": self.state.layout, "format": "single-file" if self.state.single_file else "pre-2025",
                "blobs": len(self.state.blobs) + (3 if self.state.single_file else 0)},
        }


def make_plan(a: Analysis, findings: list[Finding], opts: Options) -> Plan:
    """Decide the repair of the analysed file (pure: writes nothing)."""
    p = _Planner(a, findings, opts)
    p.run()
    p.map_findings()
    return p.plan


class _Planner:
    def __init__(self, a: Analysis, findings: list[Finding], opts: Options) -> None:
        self.a = a
        self.opts = opts
        self.target = get_target(opts.target)
        self.plan = Plan(a.path, self.target, opts, list(findings))
        self.codes = {f.code for f in findings}
        self.s: State | None = None
        self.specs: dict = {}
        self.lost: set[str] = set()
        self.bad_keys: set[int] = set()
        self.renamed: dict[str, str] = {}  # output name -> input key
        self.dropped: dict[str, str] = {}  # output name -> why it is not written
        self.bad_blobs: list = []  # (Resolved, why) of entries whose key cannot be written
        self._migrated = False

    # -- helpers ---------------------------------------------------------------------------------------------------
    def act(self, kind: str, summary: str, *fixes: tuple[str, str | None], **detail: Any) -> Action:
        x = Action(kind, summary, tuple(fixes), detail)
        self.plan.actions.append(x)
        return x

    def refuse(self, code: str, name: str | None, reason: str, forceable: bool = True) -> Refusal:
        r = Refusal(code, name, reason, forceable)
        self.plan.refusals.append(r)
        return r

    def has(self, code: str) -> bool:
        return code in self.codes

    # -- pipeline --------------------------------------------------------------------------------------------------
    def run(self) -> None:
        a = self.a
        if a.fatal is not None:
            self.refuse(a.fatal.code, None, a.fatal.message + (": " + " ".join(a.salvage) if a.salvage else ""),
                        forceable=False)
            return
        self.container()
        self.duplicates()
        self.build_state()
        if self.s is None:
            return
        self.era()
        if self.s.single_file:
            self.config()
            self.toc()
            self.layers()
            self.tokenizer()
            self.weight()
            self.target_config()
        self.pre2025_checks()
        self.orphans()
        self.unused()
        self.layout()
        self.finish()

    # -- container -------------------------------------------------------------------------------------------------
    def container(self) -> None:
        a = self.a
        for r in a.resolved:
            if r.how == "lost":
                self.lost.add(r.key)
        for r in a.resolved:
            if not r.ok or r.how == "duplicate-entry":
                continue
            if r.moved:
                kind = "relocate-blob" if r.offset != r.entry.offset else "resize-blob"
                fixes = [(c, r.key) for c in PLACEMENT] + [("tensor-size-mismatch", r.key)]
                self.act(kind, f"{r.key}: {r.note}", *fixes, key=r.key, recorded=[r.entry.offset, r.entry.size],
                         resolved=[r.offset, r.size])
        if a.header_fix:
            self.act("restore-header", a.header_fix, ("bad-magic", None), ("too-many-blobs", None),
                     ("empty-store", None), ("directory-out-of-bounds", None), ("file-size-mismatch", None))
        for r in a.resolved:
            raw = r.entry.raw_key
            name = raw.split(b"\0", 1)[0]
            if not name or not name.isascii() or any(c < 0x20 or c == 0x7F for c in name):
                self.bad_keys.add(r.index)
                self.bad_blobs.append((r, f"directory entry {r.index} has an unusable key {raw!r}"))
            elif any(raw[len(name):]):
                self.act("rewrite-key", f"key {r.key!r}: clear the bytes after its NUL (readers ignore them)",
                         ("bad-key", r.key))
            else:
                _, idx = split_name(r.key)
                if idx is not None and idx >= 999:
                    self.bad_keys.add(r.index)
                    self.bad_blobs.append((r, f"key {r.key!r} has layer number {idx} >= 999 (gemma.cpp asserts)"))
        toc_names = {rec.name for rec in a.toc or []}
        lost_entry = {x.key: x for x in a.resolved if x.how == "lost"}
        for key in sorted(self.lost - set(METADATA_KEYS)):
            r = lost_entry[key]
            if r.entry.size == 0 and key not in toc_names:
                slot = "" if not r.entry.offset else f" (bytes at its recorded offset {r.entry.offset} belong to no blob)"
                self.act("drop-empty-entry", f"drop directory entry {r.index} ({key!r}): its size is 0, so it holds "
                         f"no data{slot}", ("zero-size-blob", key))
                self.dropped[key] = "empty directory entry (size 0)"
                continue
            self.refuse("blob-lost", key, f"blob {key!r}: its bytes cannot be located ({r.note}) (--force "
                        "drops it)")
        if any(self.has(c) for c in PLACEMENT + REWRITE_FIXES) or any(r.how == "foreign-layout" for r in a.resolved):
            what = "re-lay every blob back to back on the 256-byte grid, zero all padding and write a fresh header"
            self.act("rewrite-container", what, *[(c, None) for c in PLACEMENT + REWRITE_FIXES])

    def duplicates(self) -> None:
        a, pol = self.a, self.opts.drop_duplicates
        for key, rs in a.dup_identical.items():
            self.act("drop-duplicate", f"{key}: {len(rs)} directory entries with identical bytes; keep one",
                     ("duplicate-key", key), key=key, entries=[r.index for r in rs])
        for key, rs in a.conflicts.items():
            live = [r for r in rs if r.ok]
            digests = [sha256(a.data(r))[:12] if r.ok else "lost" for r in rs]
            desc = ", ".join(f"entry {r.index} ({r.size if r.ok else '?'} bytes, sha256 {d})"
                             for r, d in zip(rs, digests))
            if pol in ("first", "last") and live:
                keep = a.chosen[key]
                self.act("drop-duplicate", f"{key}: entries differ ({desc}); keep the {pol} (entry {keep.index}) "
                         "as --drop-duplicates says", ("duplicate-key", key), key=key, kept=keep.index)
            else:
                self.refuse("duplicate-key", key, f"key {key!r} appears {len(rs)} times with different bytes "
                            f"({desc}); gemma.cpp uses the last, pre-2025 readers the first: choose with "
                            "--drop-duplicates first|last", forceable=False)

    def build_state(self) -> None:
        a = self.a
        blobs = []
        seen = set()
        for r in a.resolved:
            if r.index in self.bad_keys or r.key in seen or r.how == "duplicate-entry":
                continue
            seen.add(r.key)
            if r.key in METADATA_KEYS:
                continue
            chosen = a.chosen[r.key]
            if not chosen.ok:
                continue  # refused above (or dropped with --force)
            kind = "scales" if r.key in SCALES_KEYS else "tensor"
            blobs.append(OutBlob(r.key, kind, chosen, origin=r.key))
        s = State(a.layout, True, a.single_file, blobs)
        if a.config is not None:
            s.config = copy.deepcopy(a.config)
            raw = a.blob("config")
            s.config_raw = raw.tobytes() if raw is not None else None
            s.config_dirty = raw is None
        if a.toc is not None:
            s.toc = copy.deepcopy(a.toc)
            raw = a.blob("toc")
            if not a.toc_partial and raw is not None:
                s.toc_raw = raw.tobytes()
            else:
                s.toc_dirty = True
        if a.tokenizer is not None:
            s.tokenizer = a.tokenizer
        self.s = s

    # -- eras --------------------------------------------------------------------------------------------------------
    def era(self) -> None:
        a, s, t = self.a, self.s, self.target
        if a.era == "single-file-prefixed":
            self.strip_prefixes()  # a pre-2025 target re-prefixes the names at the end
        elif a.era == "pre-2025":
            want = (t is not None and t.single_file) or (t is None and (self.opts.config is not None
                                                                       or self.opts.tokenizer is not None))
            if want:
                from .migrate import migrate_pre2025

                migrate_pre2025(self)
            else:
                s.single_file = False
                s.pad_end = False

    def strip_prefixes(self) -> None:
        s = self.s
        names: dict[str, str] = {}
        for b in s.blobs:
            st = strip_prefix(b.key)
            if st is None:
                continue
            if st[1] in names:
                self.refuse("duplicate-key", st[1], f"{names[st[1]]!r} and {b.key!r} both become {st[1]!r} "
                            "without their type prefix", forceable=False)
                continue
            names[st[1]] = b.key
        for b in s.blobs:
            st = strip_prefix(b.key)
            if st is not None and names.get(st[1]) == b.key:
                self.renamed[st[1]] = b.key
                b.key = st[1]
        s.invalidate()
        if s.toc is not None:
            for rec in s.toc:
                st = strip_prefix(rec.name)
                if st is not None:
                    if st[0] != rec.type:
                        self.plan.notes.append(f"{rec.name}: key prefix says {st[0].name}, toc says "
                                               f"{type_name(rec.type)}; the toc type is kept")
                    rec.name = st[1]
            s.toc_dirty = True
        self.act("strip-prefixes", f"strip the type prefix from {len(names)} tensor keys and toc names "
                 "(Dec 2024 - May 2025 single-file format; current gemma.cpp looks tensors up by plain name)",
                 ("prefixed-names", None), ("legacy-only", None))
        self.plan.notes.append("type-prefixed single-file writers (compress_weights --tokenizer) may have left toc "
                               "scales at 1.0 for tensors they rescaled (spec §4.5, unconfirmed); repair keeps the "
                               "stored scales")

    # -- config --------------------------------------------------------------------------------------------------
    def config(self) -> None:
        a, s, o = self.a, self.s, self.opts
        if o.config is not None and s.config is not None and o.config == s.config and not a.config_error:
            pass  # same config: nothing to replace
        elif o.config is not None and not self._migrated:
            fixes = [("config-missing", None), ("config-undecodable", None), ("config-invalid", None)]
            what = "replace the config" if "config" in a.chosen else "add the config"
            s.config = copy.deepcopy(o.config)
            s.config_dirty = True
            self.act("set-config", f"{what} from {o.config_source}", *fixes, source=o.config_source)
            try:
                specs = by_name(expected_tensors(s.config))
            except Exception:  # noqa: BLE001
                specs = {}
            bad = [(r, specs[self.tensor_name(r.name)]) for r in s.toc or []
                   if self.tensor_name(r.name) in specs and (r.rows, r.cols) != specs[self.tensor_name(r.name)].shape]
            if bad:
                r, spec = bad[0]
                self.refuse("shape-mismatch", None, f"the config from {o.config_source} does not describe these "
                            f"tensors: {len(bad)} disagree, e.g. {r.name} is {r.rows} x {r.cols} but that config "
                            f"implies {spec.rows} x {spec.cols}", forceable=False)
        elif s.config is None and not self._migrated:
            if a.config_error is not None:
                code = a.config_error.code if a.config_error.code in ("config-undecodable", "config-invalid") \
                    else "config-undecodable"
                self.refuse(code, "config", f"the config cannot be decoded ({a.config_error.message}); pass "
                            "--config-from OTHER.sbs or --model NAME", forceable=False)
                return
            cfg, why = self.deduce_config()
            if cfg is None:
                self.refuse("config-missing", "config", f"the file has no config and {why}; pass --config-from "
                            "OTHER.sbs or --model NAME", forceable=False)
                return
            s.config, s.config_dirty = cfg, True
            self.act("add-config", f"add the canonical config of {why}", ("config-missing", None))
        if s.config is None:
            return
        try:
            self.specs = by_name(expected_tensors(s.config))
        except Exception:  # noqa: BLE001 - absurd dims
            self.specs = {}
        self.fix_config_counts()

    def deduce_config(self) -> tuple[ModelConfig | None, str]:
        """Canonical config from the layer count, checked against every toc shape."""
        from .. import canonical

        names = [self.tensor_name(b.key) for b in self.s.blobs if b.kind == "tensor"]
        idx = [split_name(n)[1] for n in names if split_name(n)[1] is not None
               and split_name(n)[0] not in VIT_LAYER_BASES]
        layers = max(idx) + 1 if idx else 0
        vit = any(n.startswith("qkv_ein_w") for n in names)
        pos = self.s.find("img_pos_emb")
        image_448 = pos is not None and pos.size > 448 * 448 * 5 * 2
        model = canonical.deduce_model(layers, vit, image_448)
        if not model:
            return None, f"its {layers} layers match no model gemma.cpp knows"
        recs = {r.name: r for r in (self.s.toc or [])}
        wt = weight_type(list(recs.values())) or Type.BF16
        try:
            cfg = canonical.canonical_config(model, wt)
        except SbsError as e:
            return None, e.message
        specs = by_name(expected_tensors(cfg))
        bad = [n for n, r in recs.items() if n in specs and (r.rows, r.cols) != specs[n].shape]
        if bad:
            return None, f"the deduced {cfg.model_name} does not match the tensor shapes ({bad[0]})"
        return cfg, f"{cfg.model_name} (deduced from {layers} layers, as gemma.cpp does)"

    def tensor_name(self, key: str) -> str:
        st = strip_prefix(key) if self.a.prefixed and self.s.single_file is False else None
        return st[1] if st else key

    def llm_layers_in_file(self) -> int | None:
        names = [b.key for b in self.s.blobs if b.kind == "tensor"]
        idx = [split_name(n)[1] for n in names]
        idx = [i for n, i in zip(names, idx) if i is not None and split_name(n)[0] not in VIT_LAYER_BASES]
        return max(idx) + 1 if idx else None

    def fix_config_counts(self) -> None:
        cfg = self.s.config
        L = self.llm_layers_in_file()
        n, nl = cfg.num_layers, len(cfg.layer_configs)
        changed = []
        if n != nl:
            if L is not None and nl == L:
                cfg.num_layers = L
                changed.append(f"num_layers {n} -> {L} (layer_configs and the tensors both have {L} layers)")
            elif L is not None and n == L and _uniform(cfg.layer_configs):
                cfg.layer_configs = [copy.deepcopy(cfg.layer_configs[0]) for _ in range(L)]
                changed.append(f"layer_configs resized {nl} -> {L} (all entries identical; num_layers and the "
                               f"tensors say {L})")
            else:
                self.refuse("config-invalid", "config", f"num_layers is {n}, layer_configs has {nl} entries and "
                            f"the tensors have {L} layers: which side is right is ambiguous", forceable=False)
                return
        want = cfg.num_layers
        w = cfg.attention_window_sizes
        if len(w) != want:
            per = _period(w)
            if per is not None:
                cfg.attention_window_sizes = [w[i % per] for i in range(want)]
                changed.append(f"attention_window_sizes resized {len(w)} -> {want} following its repeating "
                               f"pattern of {per}")
            else:
                self.refuse("config-invalid", "config", f"attention_window_sizes has {len(w)} entries for {want} "
                            "layers and no repeating pattern says which windows are meant", forceable=False)
        for i, lc in enumerate(cfg.layer_configs):
            if lc.type != 0:
                changed.append(f"layer_configs[{i}].type {lc.type} -> 0 (an LLM layer is kGemma)")
                lc.type = 0
        vit_num = VIT_TYPE[cfg.schema_revision]
        if self.a.config_lenient:
            self.plan.notes.append("the config decodes only when layer types are read by position (a ViT layer "
                                   "type that is invalid in the config's own numbering)")
        for i, lc in enumerate(cfg.vit_config.layer_configs):
            # In the May-2025 numbering 1 is a Griffin layer; in the current one 2 is renumbered below.
            if lc.type != vit_num and not (cfg.schema_revision == "2025-10" and lc.type == 2):
                changed.append(f"vit_config.layer_configs[{i}].type {lc.type} -> kVit (its position says ViT)")
                lc.type = vit_num
        if cfg.model in (10, 11, 12, 13) and cfg.wrapping == 2:
            cfg.wrapping = 3
            changed.append("wrapping 2 -> 3 (PALIGEMMA was 2 before 2025-03-11; 2 is now GEMMA_VLM)")
        emb = self.s.record("c_embedding")
        if emb is not None and emb.cols == cfg.model_dim and emb.rows != cfg.vocab_size:
            b = self.s.find("c_embedding")
            pieces = _pieces(self.opts.tokenizer or (self.a.tokenizer if self.a.tokenizer_status == "ok" else None))
            if b is not None and _size_ok(emb, b.size) and (pieces is None or pieces <= emb.rows):
                changed.append(f"vocab_size {cfg.vocab_size} -> {emb.rows} (the rows of c_embedding, whose "
                               "blob size confirms them" + (f", and the tokenizer's {pieces} pieces fit"
                                                            if pieces else "") + ")")
                cfg.vocab_size = emb.rows
            elif b is not None and pieces is not None and pieces > emb.rows:
                self.refuse("vocab-mismatch", "c_embedding", f"c_embedding has {emb.rows} rows but the tokenizer "
                            f"has {pieces} pieces (config.vocab_size {cfg.vocab_size}): the embedding is "
                            "incomplete or belongs to another model", forceable=True)
        dims = self.fix_layer_dims()
        changed += dims
        if changed:
            self.s.config_dirty = True
            self.specs = by_name(expected_tensors(cfg))
            fixes = [("config-invalid", None), ("vocab-mismatch", "c_embedding")]
            if dims:
                fixes.append(("shape-mismatch", None))
            self.act("fix-config", "; ".join(changed), *fixes)

    def fix_layer_dims(self) -> list[str]:
        """LLM layer dims the layer's own tensors determine unanimously (toc shapes whose blob sizes agree)
        but the config contradicts."""
        cfg, s = self.s.config, self.s
        out = []
        D = cfg.model_dim
        recs = {}
        for r in s.toc or []:
            b = s.find(r.name)
            if b is not None and r.type in Type._value2member_map_ and _size_ok(r, b.size):
                recs[r.name] = r
        for i, lc in enumerate(cfg.layer_configs):
            got: dict[str, set[int]] = {"qkv_dim": set(), "heads": set(), "kv_heads": set(), "ff_hidden_dim": set()}

            def rec(base: str):
                return recs.get(f"{base}_{i}")

            for base in ("key_norm", "query_norm"):
                if rec(base) is not None and rec(base).rows == 1:
                    got["qkv_dim"].add(rec(base).cols)
            r = rec("att_ein")
            if r is not None and D and r.rows % D == 0:
                got["qkv_dim"].add(r.cols)
                got["heads"].add(r.rows // D)
            if len(got["qkv_dim"]) == 1:
                Dh = next(iter(got["qkv_dim"]))
                r = rec("att_w")
                if r is not None and r.rows == D and r.cols % Dh == 0:
                    got["heads"].add(r.cols // Dh)
                r = rec("qkv1_w")
                if r is not None and r.cols == D and r.rows % Dh == 0:
                    got["heads"].add(r.rows // Dh)
                r = rec("qkv2_w")
                if r is not None and r.cols == D and r.rows % (2 * Dh) == 0:
                    got["kv_heads"].add(r.rows // (2 * Dh))
                r = rec("qkv_ein")
                if r is not None and r.cols == D and r.rows % Dh == 0 and len(got["heads"]) == 1:
                    k2 = r.rows // Dh - next(iter(got["heads"]))
                    if k2 >= 0 and k2 % 2 == 0:
                        got["kv_heads"].add(k2 // 2)
            for base, rows_per_f, col in (("gating_ein", 2, False), ("gating1_w", 1, False),
                                          ("gating2_w", 1, False), ("linear_w", None, True)):
                r = rec(base)
                if r is None:
                    continue
                if col and r.rows == D:
                    got["ff_hidden_dim"].add(r.cols)
                elif not col and r.cols == D and r.rows % rows_per_f == 0:
                    got["ff_hidden_dim"].add(r.rows // rows_per_f)
            for fld, vals in got.items():
                if len(vals) == 1:
                    v = next(iter(vals))
                    if v and getattr(lc, fld) != v:
                        out.append(f"layer_configs[{i}].{fld} {getattr(lc, fld)} -> {v} (what all of layer {i}'s "
                                   "tensors say)")
                        setattr(lc, fld, v)
        return out

    # -- toc -------------------------------------------------------------------------------------------------------
    def toc(self) -> None:
        a, s = self.a, self.s
        if s.config is None:
            return
        if s.toc is None:
            s.toc, s.toc_dirty = [], True
        self.dedupe_toc()
        have = {r.name for r in s.toc}
        blob_keys = set(s.keys())
        # Records whose blob is gone.
        for rec in list(s.toc):
            if rec.name in blob_keys:
                continue
            spec = self.specs.get(rec.name)
            in_input = self.renamed.get(rec.name, rec.name) in self.lost
            if in_input:
                s.toc.remove(rec)
                s.toc_dirty = True
                continue  # blob-lost refusal already says it
            if self.adopt_orphan(rec):
                continue
            if rec.name in self.a.salvaged_lost:
                s.toc.remove(rec)
                s.toc_dirty = True
                continue
            if spec is not None and spec.required:
                self.refuse("toc-blob-missing", rec.name, f"the toc describes {rec.name} but its blob is not in "
                            "the file: the tensor's bytes are gone (--force drops the record)")
                s.toc.remove(rec)
                s.toc_dirty = True
            else:
                s.toc.remove(rec)
                s.toc_dirty = True
                self.act("drop-toc-record", f"drop the toc record of {rec.name}: it has no blob and no layer needs "
                         "it", ("toc-blob-missing", rec.name))
        lost = self.a.salvaged_lost
        if lost:
            self.refuse("toc-blob-missing", None, f"{len(lost)} tensors lay past the point where the file was cut "
                        f"off and their bytes are gone: {', '.join(lost[:8])}{', ...' if len(lost) > 8 else ''} "
                        "(--force writes the tensors that survive, as a partial file)")
        # Blobs without a record.
        rebuilt, new_records = [], []
        for b in s.blobs:
            if b.kind != "tensor" or b.key in have:
                continue
            rec, why = self.synthesize(b)
            if rec is None:
                if a.toc is None or a.toc_partial or a.toc_error is not None:
                    self.refuse("toc-undecodable" if a.toc_error else "toc-missing", b.key,
                                f"no toc record for {b.key} and {why} (--force leaves it out of the toc)")
                elif b.key in self.specs:
                    self.refuse("blob-not-in-toc", b.key, f"{b.key} has no toc record and {why}")
                else:
                    b.kind = "other"
                continue
            new_records.append(rec)
            rebuilt.append((b.key, why))
        self._insert_records(new_records)
        if rebuilt:
            if a.toc is None:
                summary = f"rebuild the missing toc: {len(rebuilt)} records from the config shapes and blob sizes"
            elif a.toc_error is not None:
                summary = (f"rebuild the damaged toc: {len(a.toc)} records recovered intact, {len(rebuilt)} "
                           "rebuilt from the config shapes and blob sizes")
            else:
                summary = f"add toc records for {len(rebuilt)} tensors that had none"
            self.act("rebuild-toc", summary, ("toc-missing", None), ("toc-undecodable", None),
                     *[("blob-not-in-toc", k) for k, _ in rebuilt],
                     records={k: why for k, why in rebuilt})
        self.check_records()

    def _insert_records(self, recs: list) -> None:
        """Add toc records in one pass, each right after the record of the nearest preceding blob."""
        if not recs:
            return
        s = self.s
        have = {r.name for r in s.toc}
        new = {r.name: r for r in recs}
        after: dict[str | None, list] = {}
        anchor = None
        for k in s.keys():
            if k in new:
                after.setdefault(anchor, []).append(new.pop(k))
            elif k in have:
                anchor = k
        out = after.get(None, []) + list(new.values())
        for r in s.toc:
            out.append(r)
            out += after.get(r.name, [])
        s.toc[:] = out
        s.toc_dirty = True

    def _insert_record(self, rec) -> None:
        """Add a toc record where gemma.cpp's writer would have put it: right after the record of the
        nearest preceding blob (the writer emits blobs and records in the same order)."""
        s = self.s
        keys = s.keys()
        pos = 0
        if rec.name in keys:
            where = {r.name: i for i, r in enumerate(s.toc)}
            for k in reversed(keys[:keys.index(rec.name)]):
                if k in where:
                    pos = where[k] + 1
                    break
        s.toc.insert(pos, rec)
        s.toc_dirty = True

    def adopt_orphan(self, rec) -> bool:
        """A blob whose key is unusable and whose size is exactly that of a toc record without a blob
        is that tensor (when only one such pairing exists)."""
        try:
            want = packed_bytes(rec.type, rec.rows * rec.cols)
        except SbsError:
            return False
        cands = [(r, why) for r, why in self.bad_blobs if r.ok and r.size == want]
        if len(cands) != 1:
            return False
        others = [x for x in self.s.toc if x is not rec and self.s.find(x.name) is None and _size_ok(x, want)]
        if others:
            return False
        r, why = cands[0]
        self.bad_blobs.remove(cands[0])
        self._insert(OutBlob(rec.name, "tensor", r, origin=r.key or f"#{r.index}"))
        self.act("rename-blob", f"{why}; it is the only blob with the {want} bytes of {rec.name}, which the toc "
                 "describes but no key names: renamed to {rec.name}".replace("{rec.name}", rec.name),
                 ("bad-key", r.key or None), ("toc-blob-missing", rec.name), ("missing-tensor", rec.name))
        return True

    def _insert(self, b: OutBlob) -> None:
        s = self.s
        pos = next((i for i, x in enumerate(s.blobs) if x.src is not None and x.src.index > b.src.index),
                   len(s.blobs))
        s.blobs.insert(pos, b)

    def orphans(self) -> None:
        """Blobs whose key cannot be written and that no toc record claims: keep their bytes under a
        placeholder name (gemma.cpp ignores blobs nothing refers to), or drop them with --drop-unused."""
        s = self.s
        for r, why in list(self.bad_blobs):
            if not r.ok:
                self.refuse("bad-key", r.key or None, f"{why}, and its bytes cannot be located ({r.note})")
                continue
            if self.opts.drop_unused:
                self.dropped[r.key or f"#{r.index}"] = f"--drop-unused: {why}"
                self.act("drop-unused", f"drop directory entry {r.index}: {why} (--drop-unused)",
                         ("bad-key", r.key or None))
                continue
            name = f"orphan{r.index}"
            while s.find(name) is not None:
                name += "x"
            self._insert(OutBlob(name, "other", r, origin=f"#{r.index}"))
            self.act("rename-blob", f"{why}; no toc record claims its {r.size} bytes: kept under the placeholder "
                     f"key {name!r} (gemma.cpp ignores it; --drop-unused drops it instead)",
                     ("bad-key", r.key or None))
        self.bad_blobs.clear()

    def dedupe_toc(self) -> None:
        s = self.s
        out, seen, identical = [], {}, []
        for rec in s.toc:
            if rec.name not in seen:
                seen[rec.name] = rec
                out.append(rec)
                continue
            prev = seen[rec.name]
            if prev.values() == rec.values():
                identical.append(rec.name)
                continue
            b = s.find(rec.name)
            ok = [r for r in (prev, rec) if b is not None and _size_ok(r, b.size) and self._shape_ok(r)]
            if len(ok) == 1:
                if ok[0] is rec:
                    out[out.index(prev)] = rec
                    seen[rec.name] = rec
                self.act("drop-toc-record", f"{rec.name}: two different toc records; keep the one whose type and "
                         "shape agree with the blob size and the config", ("toc-duplicate", rec.name))
            else:
                self.refuse("toc-duplicate", rec.name, f"two different toc records for {rec.name} and the blob does "
                            "not tell which is right", forceable=False)
        if identical:
            names = list(dict.fromkeys(identical))
            self.act("drop-toc-record", f"drop {len(identical)} second, identical toc record(s) of "
                     + ", ".join(names[:6]) + (", ..." if len(names) > 6 else ""),
                     *[("toc-duplicate", n) for n in names])
        if len(out) != len(s.toc):
            s.toc, s.toc_dirty = out, True

    def _shape_ok(self, rec) -> bool:
        spec = self.specs.get(rec.name)
        return spec is None or (rec.rows, rec.cols) == spec.shape

    def synthesize(self, b: OutBlob):
        """A toc record for blob ``b`` when the config shape, the blob size and the bytes determine it."""
        spec = self.specs.get(b.key)
        if spec is None:
            return None, "the config does not know this tensor name, so its shape is unknown"
        n = spec.rows * spec.cols
        ts = types_for_size(b.size, n, tuple(sorted(spec.types)))
        if len(ts) != 1:
            if not ts:
                return None, (f"its {b.size} bytes fit no element type for {spec.rows} x {spec.cols} "
                              f"(config shape)")
            return None, f"its {b.size} bytes fit several element types ({', '.join(t.name for t in ts)})"
        t = ts[0]
        scale, why = inferred_scale(t, self.bytes_of(b), spec)
        if scale is None:
            return None, why
        from ..toc import TocRecord

        return (TocRecord.make(b.key, t, spec.rows, spec.cols, scale),
                f"{t.name} {spec.rows} x {spec.cols} (config shape; only {t.name} fits {b.size} bytes), "
                f"scale {scale:g} ({why})")

    def bytes_of(self, b: OutBlob):
        if b.data is not None:
            import numpy as np

            return np.frombuffer(b.data, dtype=np.uint8)
        return self.a.data(b.src)

    def check_records(self) -> None:
        """Size, shape, field and scale problems of the (now complete) toc."""
        s = self.s
        field_fixed = []
        for rec in s.toc:
            b = s.find(rec.name)
            spec = self.specs.get(rec.name)
            if b is None:
                continue
            if rec.type not in Type._value2member_map_ or rec.type == 0:
                continue  # type-unsupported: cannot-fix
            size_ok = _size_ok(rec, b.size)
            shape_ok = spec is None or (rec.rows, rec.cols) == spec.shape
            if not size_ok or not shape_ok:
                self.fix_record(rec, b, spec, size_ok, shape_ok)
            if fix_record_fields(rec):
                field_fixed.append(rec.name)
                s.toc_dirty = True
            if rec.scale == 0.0:
                scale, why = inferred_scale(Type(rec.type), self.bytes_of(b), spec)
                if scale is None:
                    self.refuse("scale-invalid", rec.name, f"{rec.name} has scale 0 and {why}")
                else:
                    rec.scale = scale
                    s.toc_dirty = True
                    self.act("fix-scale", f"{rec.name}: scale 0 -> {scale:g} ({why})", ("scale-invalid", rec.name))
        if field_fixed:
            self.act("fix-toc-fields", f"recompute element_bytes/num_elements/stride of {len(field_fixed)} toc "
                     "records from type and shape", *[("toc-field-mismatch", n) for n in field_fixed])

    def fix_record(self, rec, b: OutBlob, spec, size_ok: bool, shape_ok: bool) -> None:
        s = self.s
        name = rec.name
        if spec is not None and not shape_ok:
            n_spec = spec.rows * spec.cols
            if packed_bytes(rec.type, n_spec) == b.size and (size_ok is False or rec.rows * rec.cols != n_spec):
                old = (rec.rows, rec.cols)
                rec.rows, rec.cols = spec.rows, spec.cols
                s.toc_dirty = True
                self.act("fix-toc-shape", f"{name}: toc shape {old[0]} x {old[1]} -> {spec.rows} x {spec.cols} (the "
                         "config's shape, confirmed by the blob size)", ("shape-mismatch", name),
                         ("tensor-size-mismatch", name))
                return
            if size_ok and rec.rows * rec.cols == n_spec:
                swapped = (rec.rows, rec.cols) == (spec.cols, spec.rows) and spec.rows > 1 and spec.cols > 1
                if swapped:
                    self.refuse("shape-mismatch", name, f"{name}: toc says {rec.rows} x {rec.cols}, the config "
                                f"{spec.rows} x {spec.cols}: the blob fits both, and a writer may have stored the "
                                "matrix transposed, so which layout the bytes have cannot be known",
                                forceable=False)
                    return
                old = (rec.rows, rec.cols)
                rec.rows, rec.cols = spec.rows, spec.cols
                fix_record_fields(rec)
                s.toc_dirty = True
                what = ("a vector has only one element order" if spec.rows == 1 else
                        "not a transposition, so the row-major bytes can only mean the config's shape")
                self.act("fix-toc-shape", f"{name}: toc shape {old[0]} x {old[1]} -> {spec.rows} x {spec.cols}, the "
                         f"config's shape with the same {n_spec} values ({what})", ("shape-mismatch", name))
                return
            if size_ok:
                return  # config and tensor disagree, the bytes agree with the toc: cannot-fix (shape-mismatch)
        if not size_ok:
            n = rec.rows * rec.cols
            allowed = tuple(sorted(spec.types)) if spec is not None else None
            ts = types_for_size(b.size, n, allowed) if allowed else types_for_size(b.size, n)
            if len(ts) == 1 and shape_ok:
                t = ts[0]
                scale_ok = t in (Type.SFP, Type.NUQ) or rec.scale == 1.0
                if scale_ok:
                    old = type_name(rec.type)
                    rec.type = int(t)
                    fix_record_fields(rec)
                    s.toc_dirty = True
                    self.act("fix-toc-type", f"{name}: toc type {old} -> {t.name} (the only type whose packed size "
                             f"for {rec.rows} x {rec.cols} is the blob's {b.size} bytes)",
                             ("tensor-size-mismatch", name), ("type-unsupported", name))
                    return
            want = packed_bytes(rec.type, n)
            what = "shorter" if b.size < want else "longer"
            self.refuse("tensor-size-mismatch", name, f"{name}: the blob has {b.size} bytes, {what} than the "
                        f"{want} bytes of {type_name(rec.type)} {rec.rows} x {rec.cols}, and neither the padding "
                        "nor another type explains it" + (": the tensor's bytes are incomplete"
                                                          if b.size < want else ""))

    # -- layers ----------------------------------------------------------------------------------------------------
    def layers(self) -> None:
        s, t = self.s, self.target
        if s.config is None:
            return
        present = set(s.keys())
        for c in choices(s.config):
            have = [all(n in present for n in form) for form in c.forms]
            if have[0] and any(n in present for n in c.forms[1]):
                self.drop_redundant(c)
            elif not have[0] and have[1] and t is not None and t.fused:
                self.fuse(c)

    def drop_redundant(self, c) -> None:
        s = self.s
        fused = c.forms[0][0]
        split = [n for n in c.forms[1] if s.find(n) is not None]
        verdict = self.redundancy(c, fused, split)
        for n in split:
            s.drop(n)
            self.dropped[n] = f"redundant with {fused} ({verdict})"
        self.act("drop-redundant", f"layer {c.layer}: drop {' + '.join(split)}, keep {fused}: gemma.cpp derives "
                 f"the former from the latter and since 2025-06-02 aborts on both ({verdict})",
                 ("both-forms", split[0]), ("both-forms", fused), ("legacy-only", None), key=fused, dropped=split)

    def redundancy(self, c, fused: str, split: list[str]) -> str:
        """Whether the split form holds exactly the fused tensor's values (byte level, plain types)."""
        import numpy as np

        s = self.s
        rf = s.record(fused)
        recs = [s.record(n) for n in split]
        if rf is None or any(r is None for r in recs):
            return "not compared: toc records missing"
        if any(r.type != rf.type for r in recs):
            return "not compared: different element types"
        item = plain_itemsize(rf.type)
        if item is None:
            return f"not compared: {type_name(rf.type)} streams cannot be compared without re-encoding"
        fb = self.bytes_of(s.find(fused))
        parts = [self.bytes_of(s.find(n)) for n in split]
        if c.key.startswith("att"):
            lc = s.config.layer_configs[c.layer]
            H, Dh = lc.heads, lc.qkv_dim
            D = rf.rows // max(H, 1)
            if rf.rows != H * D or rf.cols != Dh or fb.size != H * D * Dh * item or parts[0].size != fb.size:
                return "not compared: unexpected shapes"
            ein = fb.reshape(H, D, Dh, item)
            att_w = ein.transpose(1, 0, 2, 3).reshape(-1)
            same = np.array_equal(att_w, parts[0]) and recs[0].scale == rf.scale
            return ("verified: it is exactly the transposed einsum" if same else
                    "its bytes differ from the transposed einsum, as in gemma.cpp migrate_weights output; the "
                    "einsum is what gemma.cpp uses")
        joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
        same = np.array_equal(joined, fb) and all(r.scale == rf.scale for r in recs)
        return "verified: the halves are exactly its rows" if same else "the halves differ from its rows; the " \
                                                                        "fused tensor is what gemma.cpp uses"

    def fuse(self, c) -> None:
        """For readers that need att_ein/qkv_ein/gating_ein: build it from the split form (plain types only)."""
        import numpy as np

        from ..toc import TocRecord

        s, t = self.s, self.target
        fused = c.forms[0][0]
        split = list(c.forms[1])
        recs = [s.record(n) for n in split]
        spec = self.specs.get(fused)
        item = plain_itemsize(recs[0].type) if recs[0] is not None else None
        why = None
        if spec is None or any(r is None for r in recs):
            why = "toc records missing"
        elif any(r.type != recs[0].type or r.scale != recs[0].scale for r in recs):
            why = "the parts have different types or scales"
        elif item is None:
            why = f"{type_name(recs[0].type)} streams would have to be re-encoded"
        if why is not None:
            msg = (f"layer {c.layer}: {t.label} needs {fused}, but it cannot be built from {' + '.join(split)} "
                   f"without re-encoding ({why})")
            if t.key == "2025-05-07":
                self.plan.notes.append(msg + "; builds from 2025-05-13 on accept the split form")
            else:
                self.refuse("missing-tensor", fused, msg, forceable=False)
            return
        parts = [self.bytes_of(s.find(n)) for n in split]
        if c.key.startswith("att"):
            lc = s.config.layer_configs[c.layer]
            H, Dh = lc.heads, lc.qkv_dim
            D = recs[0].rows
            data = parts[0].reshape(D, H, Dh, item).transpose(1, 0, 2, 3).reshape(-1).tobytes()
            how = f"transposed from {split[0]} (att_ein[h*D+m, d] = att_w[m, h*Dh+d]; values unchanged)"
        else:
            data = np.concatenate(parts).tobytes()
            how = f"concatenated rows of {' + '.join(split)} (values unchanged)"
        pos = min(s.keys().index(n) for n in split)
        out = OutBlob(fused, "tensor", data=data, origin="+".join(split), transform=how)
        for n in split:
            s.drop(n)
            self.dropped[n] = f"merged into {fused}"
        s.blobs.insert(pos, out)
        self._insert_record(TocRecord.make(fused, recs[0].type, spec.rows, spec.cols, recs[0].scale))
        self.act("fuse-tensor", f"layer {c.layer}: build {fused}, {how}: {t.label} requires it", key=fused)

    # -- tokenizer -------------------------------------------------------------------------------------------------
    def tokenizer(self) -> None:
        a, s, o = self.a, self.s, self.opts
        if self._migrated:
            return  # the migration embedded --tokenizer already
        if o.tokenizer is not None:
            if a.tokenizer == o.tokenizer:
                return
            what = {"absent": "embed", "mock": "embed", "invalid": "replace the damaged tokenizer with",
                    "lost": "replace the unrecoverable tokenizer with", "ok": "replace the tokenizer with"}
            s.tokenizer = o.tokenizer
            self.act("embed-tokenizer", f"{what[a.tokenizer_status]} {o.tokenizer_path} ({len(o.tokenizer)} bytes)",
                     ("tokenizer-missing", None), ("tokenizer-invalid", None), ("vocab-mismatch", "tokenizer"))
            return
        if a.tokenizer_status in ("invalid", "lost"):
            self.refuse("tokenizer-invalid", "tokenizer", f"the embedded tokenizer is damaged "
                        f"({a.tokenizer_error}); pass --tokenizer FILE.spm (--force keeps it as it is)")

    # -- config.weight and target-dependent config -------------------------------------------------------------
    def weight(self) -> None:
        s = self.s
        if s.config is None or not s.toc:
            return
        w = weight_type(s.toc)
        if w is not None and w != s.config.weight:
            old = s.config.weight_name
            s.config.weight = int(w)
            s.config_dirty = True
            self.act("set-weight-type", f"config.weight {old} -> {type_name(w).lower()} (the smallest tensor type, "
                     "which gemma.cpp asserts)", ("weight-type-mismatch", None))

    def target_config(self) -> None:
        s, t = self.s, self.target
        cfg = s.config
        if cfg is None:
            return
        want_vit = t.vit_type if t is not None else 1
        have = {lc.type for lc in cfg.vit_config.layer_configs}
        if have and have != {want_vit} and t is None:
            trial = copy.deepcopy(cfg)
            for lc in trial.vit_config.layer_configs:
                lc.type = want_vit
            trial.schema_revision = "2025-10"
            try:
                trial.to_bytes()
            except SbsError as e:
                # auto: current gemma.cpp could not read it anyway (e.g. an obsolete model): keep the file
                # for the generation that reads it.
                self.plan.notes.append(f"ViT layer types left at {sorted(have)}: renumbering would not make it "
                                       f"loadable by current gemma.cpp ({e.message}); the file is kept for the "
                                       "generation that reads it")
                have = {want_vit}
        if have and have != {want_vit}:
            for lc in cfg.vit_config.layer_configs:
                lc.type = want_vit
            cfg.schema_revision = "2025-10" if want_vit == 1 else "2025-05"
            s.config_dirty = True
            when = ("gemma.cpp since 2025-09-05 reads kVit as 1" if want_vit == 1 else
                    "gemma.cpp before 2025-09-05 reads kVit as 2")
            self.act("renumber-vit", f"ViT layer type {', '.join(map(str, sorted(have)))} -> {want_vit} in "
                     f"{len(cfg.vit_config.layer_configs)} ViT layer configs ({when})", ("legacy-only", None),
                     ("config-invalid", None))
        if t is not None:
            if cfg.model >= t.max_model or (t.schema == "2025-10" and cfg.model in (1, 2, 5, 6, 8, 9)):
                self.refuse("legacy-only", "config", f"model {cfg.model_name} does not exist for {t.label}",
                            forceable=False)
            bad = [r.name for r in (s.toc or []) if r.type > t.max_type]
            if bad or cfg.weight > t.max_type:
                self.refuse("type-unsupported", bad[0] if bad else "config",
                            f"{len(bad)} tensors use a type {t.label} does not know (e.g. {bad[0] if bad else ''}"
                            f" {type_name(s.record(bad[0]).type) if bad else ''}); converting them means "
                            "re-encoding, which repair never does", forceable=False)
        try:
            cfg.to_bytes()
        except SbsError as e:
            self.refuse("config-invalid", "config", f"the config cannot be written for this target: {e.message}",
                        forceable=False)

    # -- pre-2025 ----------------------------------------------------------------------------------------------------
    def pre2025_checks(self) -> None:
        from .migrate import to_pre2025

        t = self.target
        if t is not None and not t.single_file and self.s.single_file:
            to_pre2025(self)
        if not self.s.single_file:
            self.s.pad_end = False

    # -- optional drops, layout, bookkeeping ------------------------------------------------------------------
    def unused(self) -> None:
        if not self.opts.drop_unused:
            return
        s = self.s
        toc_names = {r.name for r in s.toc or []}
        for b in list(s.blobs):
            if b.kind == "scales":
                continue
            reason = None
            if s.single_file and b.key not in toc_names:
                reason = "no toc record describes it"
            elif s.config is not None and self.specs and b.key not in self.specs:
                reason = "no layer of the config uses it"
            if reason:
                s.drop(b.key)
                self.dropped[b.key] = f"--drop-unused: {reason}"
                self.act("drop-unused", f"drop {b.key}: {reason} (--drop-unused)", ("unexpected-tensor", b.key),
                         ("blob-not-in-toc", b.key))

    def layout(self) -> None:
        s, t, o = self.s, self.target, self.opts
        want = o.layout or (t.layout if t is not None else None) or \
            ("v2" if self._migrated else self.a.layout)
        if s.single_file:
            s.pad_end = True
        if want != self.a.layout:
            why = {"v1": "gemma.cpp before 2025-07-31 reads only V1", "v2": "the layout gemma.cpp writes since "
                   "2025-07-31"}[want]
            self.act("convert-layout", f"{self.a.layout.upper()} -> {want.upper()} ({why})", ("legacy-only", None))
        s.layout = want
        if not s.single_file and s.layout == "v2":
            self.refuse("legacy-only", None, "the pre-2025 multi-file format exists only as V1", forceable=False)

    def finish(self) -> None:
        a, s = self.a, self.s
        dropped = self.dropped
        out_by_origin = {}
        for b in s.blobs:
            if b.origin is not None:
                for o in b.origin.split("+"):
                    out_by_origin.setdefault(o, b)
        seen = set()
        for r in a.resolved:
            bad = r.index in self.bad_keys
            ident = f"#{r.index}" if bad else r.key
            if ident in seen or (r.key in METADATA_KEYS and not bad) or r.how == "duplicate-entry":
                continue
            seen.add(ident)
            b = out_by_origin.get(ident)
            if bad:
                src = (r.offset, r.size) if r.ok else None
                label = f"entry {r.index} (key {r.entry.raw_key.split(bytes(1), 1)[0]!r})"
                if b is not None:
                    self.plan.proof.append(ProofEntry(label, b.key, src, "renamed: unusable key", None,
                                                      "tensor" if b.kind == "tensor" else "other"))
                else:
                    self.plan.proof.append(ProofEntry(label, None, src, self.dropped.get(ident, "unusable key"),
                                                      None, "tensor"))
                continue
            kind = "scales" if r.key in SCALES_KEYS else "tensor"
            src = (a.chosen[r.key].offset, a.chosen[r.key].size) if a.chosen[r.key].ok else None
            if src is None and r.entry.size == 0 and r.key in self.dropped:
                src = (r.entry.offset, 0)  # an empty entry: nothing to lose
                kind = "other"
            if b is not None:
                note = a.chosen[r.key].note if a.chosen[r.key].moved else ""
                self.plan.proof.append(ProofEntry(r.key, b.key, src, note, b.transform, b.kind))
            else:
                why = dropped.get(self.tensor_out_name(r.key)) or dropped.get(r.key)
                if why is None:
                    if r.index in self.bad_keys:
                        why = "unusable key"
                    elif not a.chosen[r.key].ok:
                        why = "bytes not recoverable"
                    elif kind == "scales":
                        why = "scales moved into the toc"
                    else:
                        why = "dropped"
                self.plan.proof.append(ProofEntry(r.key, None, src, why, None, kind))
        self.plan.state = s

    def tensor_out_name(self, key: str) -> str:
        for out, inp in self.renamed.items():
            if inp == key:
                return out
        return key

    # -- findings -> items -----------------------------------------------------------------------------------------
    def map_findings(self) -> None:
        from ..verify.findings import family_of

        plan = self.plan
        # Findings verify derived from metadata it read at the wrong place are consequences of that.
        moved_meta = next((x for x in plan.actions if x.kind in ("relocate-blob", "resize-blob")
                           and x.detail.get("key") in METADATA_KEYS), None)
        # Indexes: findings x actions/refusals would otherwise be quadratic on files with many entries.
        inv_renamed: dict[str, list[str]] = {}
        for out_name, inp in self.renamed.items():
            inv_renamed.setdefault(inp, []).append(out_name)
        ref_any: dict[str, Refusal] = {}  # code -> first refusal with that code and no name
        ref_named: dict[tuple[str, str], Refusal] = {}
        ref_by_name: dict[str, Refusal] = {}
        for r in plan.refusals:
            if r.name is None:
                ref_any.setdefault(r.code, r)
            else:
                ref_named.setdefault((r.code, r.name), r)
                ref_by_name.setdefault(r.name, r)
        act_index: dict[tuple[str, str | None], tuple[int, Action]] = {}
        for i, x in enumerate(plan.actions):
            for code, name in x.fixes:
                act_index.setdefault((code, name), (i, x))
        cascade = set(PLACEMENT + ("tensor-size-mismatch", "missing-tensor"))
        for f in plan.findings:
            names = {x for x in (f.blob, f.tensor) if x}
            names |= {self.renamed.get(n, n) for n in names} | {o for n in list(names) for o in inv_renamed.get(n, ())}
            ref = ref_any.get(f.code)
            if ref is None:
                if not names:
                    ref = next((r for r in plan.refusals if r.code == f.code), None)
                else:
                    ref = next((ref_named[(f.code, n)] for n in names if (f.code, n) in ref_named), None)
            if ref is None and f.code in cascade:
                ref = next((ref_by_name[n] for n in names if n in ref_by_name), None)
            hits = [act_index[k] for k in [(f.code, None)] + [(f.code, n) for n in names] if k in act_index]
            act = min(hits, key=lambda h: h[0])[1] if hits else None
            if act is None and f.code == "unloadable":
                # what makes a generation accept the file also answers "no generation does"
                act = act_index.get(("legacy-only", None), (0, None))[1]
            if act is None and ref is None and f.code == "unloadable" and plan.actions:
                # A verdict on the whole file, from the other findings: the written file is verified
                # again, and is not written if it still loads nowhere.
                plan.items.append(PlanItem(f, "fix", plan.actions[0], "decided by the other fixes; the "
                                           "repaired file is verified again before it is kept"))
                continue
            if act is None and ref is None and self.a.header_fix and f.severity == "error":
                hdr = next(x for x in plan.actions if x.kind == "restore-header")
                plan.items.append(PlanItem(f, "fix", hdr, "read through the damaged header, which repair "
                                           "recovers: " + hdr.summary))
                continue
            if act is None and ref is None and moved_meta is not None and f.severity == "error" and \
                    family_of(f.code) in ("metadata", "tokenizer", "layers", "compat"):
                plan.items.append(PlanItem(f, "fix", moved_meta, f"a consequence of reading the misplaced "
                                           f"{moved_meta.detail.get('key', 'directory')} blob; "
                                           + moved_meta.summary))
                continue
            if ref is not None and not (ref.forceable and self.opts.force and act is not None):
                plan.items.append(PlanItem(f, "cannot-fix", None, ref.reason))
            elif act is not None:
                plan.items.append(PlanItem(f, "fix", act, act.summary))
            elif f.severity == "error":
                reason = CANNOT_REASONS.get(f.code, "repair has no rule for this finding")
                plan.items.append(PlanItem(f, "cannot-fix", None, reason))
                if f.code not in ref_any and not any((f.code, n) in ref_named for n in names):
                    new = Refusal(f.code, f.tensor or f.blob, reason,
                                                 forceable=f.code in ("missing-tensor", "tensor-size-mismatch",
                                                                      "non-finite", "nuq-table-invalid",
                                                                      "scale-invalid", "toc-blob-missing"))
                    plan.refusals.append(new)
                    if new.name is None:
                        ref_any.setdefault(new.code, new)
                    else:
                        ref_named.setdefault((new.code, new.name), new)
            else:
                reason = KEEP_REASONS.get(f.code, "not an error; repair leaves it as it is")
                plan.items.append(PlanItem(f, "keep" if f.severity == "warning" else "info", None, reason))


def _size_ok(rec, size: int) -> bool:
    try:
        return packed_bytes(rec.type, rec.rows * rec.cols) == size
    except SbsError:
        return False


def _pieces(tokenizer: bytes | None) -> int | None:
    if not tokenizer:
        return None
    try:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor()
        sp.LoadFromSerializedProto(tokenizer)
        return int(sp.GetPieceSize())
    except Exception:  # noqa: BLE001
        return None


def _uniform(items: list) -> bool:
    return bool(items) and all(x == items[0] for x in items)


def _period(w: list[int]) -> int | None:
    """Smallest p such that ``w`` is its first p entries repeated, seen at least twice; None if none."""
    n = len(w)
    for p in range(1, n // 2 + 1):
        if all(w[i] == w[i % p] for i in range(n)):
            return p
    return None

