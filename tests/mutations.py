"""A small mutation library: corrupt clean ``.sbs`` files in one precise way each.

Two kinds of tools, reusable by the verify, fuzzing and repair tests:

* byte-level edits of a file image (``bytearray``): header fields, directory
  ranges and keys, single bytes, truncation/appending, and :func:`insert_gap`
  which shifts blob data while keeping everything else valid;
* :func:`rebuild`, which re-writes a model with the project's writer after
  dropping/adding/replacing blobs, toc records, config or tokenizer, so the
  result is a well-formed file with exactly one semantic defect.

:data:`CATALOGUE` lists one :class:`Mutation` per ``sbs verify`` finding code:
its ``apply(tmp_dir) -> (path, Expect)`` builds the corrupted file from a
clean fixture and says which code must be reported, at which location.
"""
from __future__ import annotations

import copy
import io
import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import sbs_tools
from sbs_tools import blobstore, codecs
from sbs_tools.blobstore import BLOB_ALIGN, END_ALIGN, HEADER_BYTES, KEY_BYTES, round_up
from sbs_tools.config import ModelConfig
from sbs_tools.toc import TocRecord, encode_toc
from sbs_tools.types import Type
from sbs_tools.verify.metadata import config_field_offsets
from sbs_tools.writer import write_blobstore

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fixtures" / "corpus"
G2_V2 = CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs"
G2_V1 = CORPUS / "v1" / "gemma2-2b-tiny-sfp.sbs"
G2_BF16 = CORPUS / "v2" / "gemma2-2b-tiny-bf16.sbs"
G2_I8 = CORPUS / "v2" / "gemma2-2b-tiny-i8.sbs"
G2_NUQ = CORPUS / "v2" / "gemma2-2b-tiny-nuq.sbs"
G3_1B = CORPUS / "v2" / "gemma3-1b-tiny-sfp.sbs"
VIT = CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs"
SP512 = CORPUS / "tiny_sp512.model"
E0 = ROOT / "fixtures" / "legacy" / "e0-gemma2-tiny-sfp.sbs"


# -- byte-level helpers ---------------------------------------------------------------------------------------
def directory(data: bytes | bytearray) -> blobstore.Directory:
    return blobstore.read_directory(np.frombuffer(bytes(data), dtype=np.uint8))


def header_offset(data: bytes | bytearray) -> int:
    """Offset of the effective header (0 for V1, the trailer for V2)."""
    return directory(data).header.offset


def key_offset(d: blobstore.Directory, key: str) -> int:
    e = next(e for e in d.entries if e.key == key)
    return d.dir_offset + KEY_BYTES * e.index


def range_offset(d: blobstore.Directory, key: str) -> int:
    e = next(e for e in d.entries if e.key == key)
    return d.dir_offset + KEY_BYTES * len(d.entries) + 16 * e.index


def set_header(data: bytearray, *, magic: int | None = None, num_blobs: int | None = None,
               file_bytes: int | None = None, at: int | None = None) -> None:
    """Overwrite fields of the header at ``at`` (default: the effective header)."""
    at = header_offset(data) if at is None else at
    if magic is not None:
        data[at:at + 4] = struct.pack("<I", magic)
    if num_blobs is not None:
        data[at + 4:at + 8] = struct.pack("<I", num_blobs)
    if file_bytes is not None:
        data[at + 8:at + 16] = struct.pack("<Q", file_bytes)


def set_range(data: bytearray, key: str, *, offset: int | None = None, size: int | None = None) -> int:
    """Overwrite a directory range; returns the byte offset of the range entry."""
    at = range_offset(directory(data), key)
    if offset is not None:
        data[at:at + 8] = struct.pack("<Q", offset)
    if size is not None:
        data[at + 8:at + 16] = struct.pack("<Q", size)
    return at


def set_key(data: bytearray, key: str, raw: bytes) -> int:
    """Overwrite the 16 key bytes of ``key``; returns their offset."""
    at = key_offset(directory(data), key)
    data[at:at + KEY_BYTES] = raw.ljust(KEY_BYTES, b"\0")[:KEY_BYTES]
    return at


def blob_range(data: bytes | bytearray, key: str) -> tuple[int, int]:
    e = directory(data).by_key()[key]
    return e.offset, e.size


def poke(data: bytearray, offset: int, raw: bytes) -> None:
    data[offset:offset + len(raw)] = raw


def insert_gap(data: bytearray, key: str, gap: int = BLOB_ALIGN) -> bytearray:
    """Move blob ``key`` and every later blob ``gap`` bytes further, keeping the file size.

    The slack is taken from the zero padding at the end of the payload (V2:
    before the directory; V1: the 64 KiB end padding). Only ``key`` then
    violates the back-to-back rule (``blob-gap``).
    """
    d = directory(data)
    entries = sorted(d.entries, key=lambda e: e.offset)
    start = next(e for e in entries if e.key == key).offset
    payload_end = max(round_up(e.offset + e.size, BLOB_ALIGN) for e in entries)
    slack_end = d.dir_offset if d.layout == "v2" else len(data)
    assert slack_end - payload_end >= gap, "no room for the gap"
    out = bytearray(data[:start]) + bytearray(gap) + bytearray(data[start:payload_end]) \
        + bytearray(data[payload_end + gap:])
    assert len(out) == len(data)
    d2 = directory(out)  # directory of V1 files moves nowhere; V2 directory unchanged
    for e in d2.entries:
        if e.offset >= start:
            set_range(out, e.key, offset=e.offset + gap)
    return out


# -- model-level rebuild --------------------------------------------------------------------------------------
def rebuild(src: Path, dst: Path, *, layout: str | None = None, drop: tuple[str, ...] = (),
            drop_records: tuple[str, ...] = (), replace: dict[str, tuple[TocRecord, bytes]] | None = None,
            add: list[tuple[TocRecord | None, str, bytes]] | None = None,
            config: ModelConfig | bytes | None | str = "keep", tokenizer: bytes | None | str = "keep",
            toc: bool = True, order: Callable[[list[str]], list[str]] | None = None,
            toc_records: Callable[[list[TocRecord]], list[TocRecord]] | None = None) -> Path:
    """Re-write ``src`` as gemma.cpp's SbsWriter orders it (tensors, config, tokenizer, toc), after edits.

    ``drop``: tensors removed (blob and record); ``drop_records``: records removed, blobs kept;
    ``replace``: name -> (record, bytes); ``add``: (record or None, key, bytes) appended after the
    tensors (record None = a blob without a toc record); ``config``: a ModelConfig, raw bytes, or
    None to omit the blob; ``tokenizer``: bytes, None to omit the blob; ``toc=False`` omits the toc;
    ``order`` permutes the final key list; ``toc_records`` edits the record list last.
    """
    replace = replace or {}
    add = add or []
    with sbs_tools.open(src) as f:
        records: list[TocRecord] = []
        blobs: dict[str, bytes] = {}
        for rec in f.toc:
            if rec.name in drop:
                continue
            if rec.name in replace:
                rec, data = replace[rec.name]
            else:
                data = f.raw(rec.name).tobytes()
            blobs[rec.name] = data
            if rec.name not in drop_records:
                records.append(rec)
        for rec, key, data in add:
            blobs[key] = data
            if rec is not None:
                records.append(rec)
        keys = list(blobs)
        cfg = f.config if config == "keep" else config
        if cfg is not None:
            blobs["config"] = cfg.to_bytes() if isinstance(cfg, ModelConfig) else cfg
            keys.append("config")
        tok = f.raw("tokenizer").tobytes() if tokenizer == "keep" else tokenizer
        if tok is not None:
            blobs["tokenizer"] = tok
            keys.append("tokenizer")
        if toc_records is not None:
            records = toc_records(records)
        if toc:
            blobs["toc"] = encode_toc(records)
            keys.append("toc")
        lay = layout or f.layout
    if order is not None:
        keys = order(keys)
    write_blobstore(dst, [(k, blobs[k]) for k in keys], layout=lay)
    return dst


def record(f_path: Path, name: str) -> TocRecord:
    with sbs_tools.open(f_path) as f:
        return copy.copy(next(r for r in f.toc if r.name == name))


def config_of(path: Path) -> ModelConfig:
    with sbs_tools.open(path) as f:
        return copy.deepcopy(f.config)


def config_offset(path: Path, field_path: str) -> int:
    """Absolute offset of a config field (e.g. ``"model"``, ``"vit_config.layer_configs[0].type"``)."""
    with sbs_tools.open(path) as f:
        e = f.blobs["config"]
        return config_field_offsets(f.config, e.offset, e.size // 4)[field_path]


def decode_tensor(path: Path, name: str) -> np.ndarray:
    with sbs_tools.open(path) as f:
        return np.array(f.tensor(name))


# -- the catalogue ------------------------------------------------------------------------------------------------
@dataclass
class Expect:
    """What ``verify`` must report: the code and (a subset of) its location fields."""

    code: str
    severity: str = "error"
    where: dict[str, Any] = field(default_factory=dict)
    message_contains: tuple[str, ...] = ()
    deep: bool = False
    #: Other error codes that are an unavoidable consequence (normally none).
    also: frozenset[str] = frozenset()


@dataclass
class Mutation:
    name: str
    apply: Callable[[Path], tuple[Path, Expect]]


def _bytes_mutation(src: Path, edit: Callable[[bytearray], Expect]) -> Callable[[Path], tuple[Path, Expect]]:
    def apply(tmp: Path) -> tuple[Path, Expect]:
        data = bytearray(src.read_bytes())
        exp = edit(data)
        out = tmp / "mutated.sbs"
        out.write_bytes(bytes(data) if isinstance(data, bytearray) else data)
        return out, exp
    return apply


def _image_mutation(make: Callable[[], tuple[bytes, Expect]]) -> Callable[[Path], tuple[Path, Expect]]:
    def apply(tmp: Path) -> tuple[Path, Expect]:
        data, exp = make()
        out = tmp / "mutated.sbs"
        out.write_bytes(data)
        return out, exp
    return apply


def _rebuilt(src: Path, edit: Callable[[Path, Path], Expect]) -> Callable[[Path], tuple[Path, Expect]]:
    def apply(tmp: Path) -> tuple[Path, Expect]:
        out = tmp / "mutated.sbs"
        exp = edit(src, out)
        return out, exp
    return apply


def _ordered_last(*names: str) -> Callable[[list[str]], list[str]]:
    """Key order with ``names`` moved to the very end (gemma.cpp finds blobs by name; order is free)."""
    return lambda keys: [k for k in keys if k not in names] + list(names)


# ---- format / container ----
def _m_empty(tmp: Path) -> tuple[Path, Expect]:
    out = tmp / "empty.sbs"
    out.write_bytes(b"")
    return out, Expect("not-sbs", where={"offset": 0}, message_contains=("empty",))


def _m_gguf(tmp: Path) -> tuple[Path, Expect]:
    out = tmp / "model.gguf"
    out.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0) + bytes(4096))
    return out, Expect("not-sbs", where={"offset": 0}, message_contains=("GGUF",))


def _m_safetensors(tmp: Path) -> tuple[Path, Expect]:
    meta = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    out = tmp / "model.safetensors"
    out.write_bytes(struct.pack("<Q", len(meta)) + meta + bytes(8))
    return out, Expect("not-sbs", where={"offset": 0}, message_contains=("safetensors",))


def _m_hdf5(tmp: Path) -> tuple[Path, Expect]:
    out = tmp / "model.h5"
    out.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(1024))
    return out, Expect("not-sbs", where={"offset": 0}, message_contains=("HDF5",))


def _m_task(tmp: Path) -> tuple[Path, Expect]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("TF_LITE_PREFILL_DECODE", b"\0" * 64)
        z.writestr("TOKENIZER_MODEL", b"\0" * 16)
    out = tmp / "gemma.task"
    out.write_bytes(buf.getvalue())
    return out, Expect("not-sbs", where={"offset": 0}, message_contains=(".task",))


def _e_bad_magic_v1(d: bytearray) -> Expect:
    set_header(d, magic=0x0A534254, at=0)
    return Expect("bad-magic", where={"offset": 0})


def _e_bad_magic_v2(d: bytearray) -> Expect:
    at = len(d) - HEADER_BYTES
    set_header(d, magic=0x12345678, at=at)
    return Expect("bad-magic", where={"offset": at})


def _e_size_v1(d: bytearray) -> Expect:
    set_header(d, file_bytes=len(d) + END_ALIGN, at=0)
    return Expect("file-size-mismatch", where={"offset": 8}, message_contains=("truncated",))


def _e_size_v2_header(d: bytearray) -> Expect:
    at = len(d) - HEADER_BYTES
    set_header(d, file_bytes=len(d) - END_ALIGN, at=at)
    return Expect("file-size-mismatch", where={"offset": at + 8})


def _e_appended_v2(d: bytearray) -> Expect:
    n = len(d)
    d += b"junk" * 10
    return Expect("file-size-mismatch", where={"offset": n}, message_contains=("appended",))


def _e_too_many_v1(d: bytearray) -> Expect:
    set_header(d, num_blobs=(1 << 20) + 1, at=0)  # above kMaxBlobs: gemma.cpp tries V2, and there is no trailer
    return Expect("too-many-blobs", where={"offset": 4})


def _e_too_many_v2(d: bytearray) -> Expect:
    at = len(d) - HEADER_BYTES
    set_header(d, num_blobs=(1 << 20) + 1, at=at)  # above kMaxBlobs (0d8948f7); 16384..1 Mi is a compat matter
    return Expect("too-many-blobs", where={"offset": at + 4})


def _e_empty_store_v2(d: bytearray) -> Expect:
    at = len(d) - HEADER_BYTES
    set_header(d, num_blobs=0, at=at)
    return Expect("empty-store", where={"offset": at + 4})


def _e_dir_oob_v1(d: bytearray) -> Expect:
    set_header(d, num_blobs=60000, at=0)
    return Expect("directory-out-of-bounds", where={"offset": 16})


def _e_blob_oob(d: bytearray) -> Expect:
    at = set_range(d, "linear_w_1", offset=len(d) + BLOB_ALIGN)
    return Expect("blob-out-of-bounds", where={"offset": at, "blob": "linear_w_1"})


def _e_misaligned(d: bytearray) -> Expect:
    off, _ = blob_range(d, "c_final_norm")
    at = set_range(d, "c_final_norm", offset=off + 16)
    return Expect("blob-misaligned", where={"offset": at, "blob": "c_final_norm"})


def _e_nonzero_padding(d: bytearray) -> Expect:
    poke(d, 100, b"\x01")  # inside the V2 placeholder's zero padding [16, 256)
    return Expect("nonzero-padding", "warning", where={"offset": 100})


def _e_nonzero_padding_after_blob(d: bytearray) -> Expect:
    off, size = blob_range(d, "tokenizer")  # 3543 bytes: 41 bytes of padding follow
    poke(d, off + size + 3, b"\xff")
    return Expect("nonzero-padding", "warning", where={"offset": off + size + 3})


def _e_trailing_v1(d: bytearray) -> Expect:
    d += b"\xaa" * 20
    set_header(d, file_bytes=len(d), at=0)
    return Expect("end-not-aligned", "warning")


def _e_bad_key_nul(d: bytearray) -> Expect:
    at = set_key(d, "toc", b"toc\0XYZ")
    return Expect("bad-key", where={"offset": at, "blob": "toc"})


def _gap(src: Path) -> Callable[[Path], tuple[Path, Expect]]:
    def apply(tmp: Path) -> tuple[Path, Expect]:
        data = insert_gap(bytearray(src.read_bytes()), "linear_w_0")
        out = tmp / "mutated.sbs"
        out.write_bytes(bytes(data))
        return out, Expect("blob-gap", where={"offset": range_offset(directory(data), "linear_w_0"),
                                              "blob": "linear_w_0"})
    return apply


def _overlap(tmp: Path) -> tuple[Path, Expect]:
    # Clean fixture with two equal-size norms stored last, then make the last start where the other starts.
    clean = rebuild(G2_V2, tmp / "clean.sbs", order=_ordered_last("pre_att_ns_1", "pre_ff_ns_1"))
    data = bytearray(clean.read_bytes())
    off, _ = blob_range(data, "pre_att_ns_1")
    at = set_range(data, "pre_ff_ns_1", offset=off)
    out = tmp / "mutated.sbs"
    out.write_bytes(bytes(data))
    return out, Expect("blob-overlap", where={"offset": at, "blob": "pre_ff_ns_1"})


def _extra_blob_then(edit: Callable[[bytearray], Expect], key: str = "Xtoc",
                     payload: Callable[[Path], bytes] | None = None) -> Callable[[Path], tuple[Path, Expect]]:
    """Clean V2 model plus one extra last blob ``key``, then a byte edit (for key/size defects)."""
    def apply(tmp: Path) -> tuple[Path, Expect]:
        with sbs_tools.open(G2_V2) as f:
            blobs = [(e.key, f.raw(e.key).tobytes()) for e in f.directory.entries]
            toc = f.raw("toc").tobytes()
        data = payload(G2_V2) if payload else toc
        clean = tmp / "clean.sbs"
        write_blobstore(clean, blobs + [(key, data)])
        img = bytearray(clean.read_bytes())
        exp = edit(img)
        out = tmp / "mutated.sbs"
        out.write_bytes(bytes(img))
        return out, exp
    return apply


def _e_duplicate(d: bytearray) -> Expect:
    at = set_key(d, "Xtoc", b"toc")  # a second "toc" entry with identical content
    return Expect("duplicate-key", where={"offset": at, "blob": "toc"})


def _e_empty_key(d: bytearray) -> Expect:
    at = set_key(d, "Xtoc", b"")
    return Expect("bad-key", where={"offset": at})


def _e_nonascii_key(d: bytearray) -> Expect:
    at = set_key(d, "Xtoc", b"to\xffc")
    return Expect("bad-key", where={"offset": at})


def _e_zero_size(d: bytearray) -> Expect:
    at = set_range(d, "Xtoc", size=0)
    return Expect("zero-size-blob", where={"offset": at + 8, "blob": "Xtoc"})


def _e_layer_999(d: bytearray) -> Expect:
    at = set_key(d, "Xtoc", b"extra_1000")
    return Expect("bad-key", where={"offset": at, "blob": "extra_1000"})


def _e_bad_placeholder(d: bytearray) -> Expect:
    poke(d, 0, b"\0\0\0\0")  # V2: gemma.cpp warns about the magic and reads the trailer
    return Expect("bad-placeholder", "warning", where={"offset": 0})


# ---- metadata ----
def _m_config_missing(src: Path, dst: Path) -> Expect:
    rebuild(src, dst, config=None)
    return Expect("config-missing")


def _m_toc_missing(src: Path, dst: Path) -> Expect:
    rebuild(src, dst, toc=False)
    return Expect("toc-missing")


def _e_config_undecodable(d: bytearray) -> Expect:
    off, _ = blob_range(d, "config")
    poke(d, off, struct.pack("<I", 0x00FFFFFF))  # length prefix far beyond the blob
    return Expect("config-undecodable", where={"offset": off, "blob": "config"})


def _config_word(field_path: str, value: int, code: str = "config-invalid", src: Path = G2_V2,
                 **exp: Any) -> Callable[[Path], tuple[Path, Expect]]:
    def edit(d: bytearray) -> Expect:
        at = config_offset(src, field_path)
        poke(d, at, struct.pack("<I", value))
        extra = dict(exp)
        return Expect(code, where={"offset": at, "blob": "config", **extra.pop("where", {})}, **extra)
    return _bytes_mutation(src, edit)


def _m_config_extra(src: Path, dst: Path) -> Expect:
    cfg = config_of(src)
    cfg.stored_fields = None  # every field this release knows, then one more
    words = list(cfg.to_words())
    words[0] += 1
    words.append(7)
    rebuild(src, dst, config=np.asarray(words, dtype="<u4").tobytes())
    return Expect("newer-format", "warning", where={"blob": "config"})


def _m_config_old_writer(src: Path, dst: Path) -> Expect:
    words = list(config_of(src).to_words())
    n_scale_names = 1 + sum(1 + -(-len(b) // 4) for b in config_of(src).scale_base_names)
    words = words[:len(words) - n_scale_names]  # as written before scale_base_names existed (2025-05-06)
    words[0] = len(words) - 1
    rebuild(src, dst, config=np.asarray(words, dtype="<u4").tobytes())
    return Expect("config-missing-fields", "info", where={"blob": "config"})


def _m_config_windows(src: Path, dst: Path) -> Expect:
    cfg = config_of(src)
    cfg.attention_window_sizes = cfg.attention_window_sizes[:-1]
    rebuild(src, dst, config=cfg)
    return Expect("config-invalid", where={"blob": "config"}, message_contains=("attention_window_sizes",))


def _m_config_layers(src: Path, dst: Path) -> Expect:
    cfg = config_of(src)
    cfg.num_layers += 1
    rebuild(src, dst, config=cfg)
    return Expect("config-invalid", where={"blob": "config"}, message_contains=("num_layers",))


def _m_config_nan(src: Path, dst: Path) -> Expect:
    rebuild(src, dst)
    at = config_offset(dst, "att_cap")
    data = bytearray(dst.read_bytes())
    poke(data, at, struct.pack("<I", 0x7FC00000))
    dst.write_bytes(bytes(data))
    return Expect("config-invalid", where={"offset": at, "blob": "config"}, message_contains=("att_cap",))


def _m_vit_as_gemma(src: Path, dst: Path) -> Expect:
    cfg = config_of(src)
    cfg.vit_config.layer_configs[1].type = 0
    rebuild(src, dst, config=cfg)
    return Expect("config-invalid", where={"offset": config_offset(dst, "vit_config.layer_configs[1].type"),
                                           "layer": 1, "layer_type": "kVit"})


def _e_toc_undecodable(d: bytearray) -> Expect:
    off, _ = blob_range(d, "toc")
    poke(d, off + 8, struct.pack("<I", 0))  # an all-zero name word (UTF-8 bytes are valid since 4b26b039)
    return Expect("toc-undecodable", where={"offset": off + 8, "blob": "toc"})


def _m_toc_blob_missing(src: Path, dst: Path) -> Expect:
    rec = TocRecord.make("extra_0", Type.BF16, 1, 128)
    rebuild(src, dst, toc_records=lambda rs: rs + [rec])
    return Expect("toc-blob-missing", where={"blob": "toc", "tensor": "extra_0"})


def _m_blob_not_in_toc(src: Path, dst: Path) -> Expect:
    rebuild(src, dst, add=[(None, "stray", b"\1" * 300)])
    with sbs_tools.open(dst) as f:
        off = f.blobs["stray"].offset
    return Expect("blob-not-in-toc", "warning", where={"blob": "stray", "offset": off})


def _m_toc_duplicate(src: Path, dst: Path) -> Expect:
    rebuild(src, dst, toc_records=lambda rs: rs + [copy.copy(rs[1])])
    return Expect("toc-duplicate", where={"blob": "toc", "tensor": "c_final_norm"})


def _m_toc_fields(src: Path, dst: Path) -> Expect:
    def edit(rs: list[TocRecord]) -> list[TocRecord]:
        r = next(r for r in rs if r.name == "linear_w_0")
        r.stride = r.cols + 8
        return rs
    rebuild(src, dst, toc_records=edit)
    return Expect("toc-field-mismatch", "warning", where={"blob": "toc", "tensor": "linear_w_0"})


def _m_size_mismatch(src: Path, dst: Path) -> Expect:
    rec = record(src, "pre_att_ns_0")
    with sbs_tools.open(src) as f:
        data = f.raw("pre_att_ns_0").tobytes() + b"\0" * 4
    rebuild(src, dst, replace={"pre_att_ns_0": (rec, data)})
    with sbs_tools.open(dst) as f:
        off = f.blobs["pre_att_ns_0"].offset
    return Expect("tensor-size-mismatch", where={"tensor": "pre_att_ns_0", "blob": "pre_att_ns_0", "offset": off})


def _m_weight_type(src: Path, dst: Path) -> Expect:
    cfg = config_of(src)
    cfg.weight = int(Type.BF16)  # an SFP file
    rebuild(src, dst, config=cfg)
    return Expect("weight-type-mismatch", where={"offset": config_offset(dst, "weight"), "blob": "config",
                                                 "tensor": "att_ein_0"})


def _m_scale_zero(src: Path, dst: Path) -> Expect:
    def edit(rs: list[TocRecord]) -> list[TocRecord]:
        next(r for r in rs if r.name == "linear_w_1").scale = 0.0
        return rs
    rebuild(src, dst, toc_records=edit)
    return Expect("scale-invalid", where={"blob": "toc", "tensor": "linear_w_1"})


def _m_scale_ignored(src: Path, dst: Path) -> Expect:
    def edit(rs: list[TocRecord]) -> list[TocRecord]:
        next(r for r in rs if r.name == "pre_ff_ns_1").scale = 2.0
        return rs
    rebuild(src, dst, toc_records=edit)
    return Expect("scale-ignored", "warning", where={"tensor": "pre_ff_ns_1", "layer": 1, "layer_type": "kGemma"})


def _m_tokenizer_missing(src: Path, dst: Path) -> Expect:
    rebuild(src, dst, tokenizer=b"unavailable")
    return Expect("tokenizer-missing", "warning", where={"blob": "tokenizer"})


def _m_tokenizer_absent(src: Path, dst: Path) -> Expect:
    rebuild(src, dst, tokenizer=None)
    return Expect("tokenizer-missing", "warning")


def _m_tokenizer_invalid(src: Path, dst: Path) -> Expect:
    rebuild(src, dst, tokenizer=b"this is not a sentencepiece model" * 3)
    return Expect("tokenizer-invalid", where={"blob": "tokenizer"})


def _m_vocab_tokenizer(src: Path, dst: Path) -> Expect:
    rebuild(src, dst, tokenizer=SP512.read_bytes())  # 512 pieces, vocab_size 256
    return Expect("vocab-mismatch", where={"blob": "tokenizer"}, message_contains=("512",))


def _m_vocab_embedding(src: Path, dst: Path) -> Expect:
    rec = record(src, "c_embedding")
    with sbs_tools.open(src) as f:
        data = f.raw("c_embedding").tobytes()
    rec.rows //= 2
    rec.num_elements //= 2
    rebuild(src, dst, replace={"c_embedding": (rec, data[:len(data) // 2])})
    return Expect("vocab-mismatch", where={"tensor": "c_embedding"})


# ---- layers ----
def _drop(name: str, layer: int, layer_type: str) -> Callable[[Path, Path], Expect]:
    def edit(src: Path, dst: Path) -> Expect:
        rebuild(src, dst, drop=(name,))
        return Expect("missing-tensor", where={"tensor": name, "layer": layer, "layer_type": layer_type})
    return edit


def _m_unexpected(src: Path, dst: Path) -> Expect:
    rec = TocRecord.make("q_ein_1", Type.BF16, 4, 128)
    rebuild(src, dst, add=[(rec, "q_ein_1", b"\0\x3f" * 512)])
    return Expect("unexpected-tensor", "warning", where={"tensor": "q_ein_1", "layer": 1, "layer_type": "kGemma"})


def _m_unexpected_vit(src: Path, dst: Path) -> Expect:
    rec = TocRecord.make("ln_0_bias_5", Type.BF16, 1, 64)
    rebuild(src, dst, add=[(rec, "ln_0_bias_5", b"\0\x3f" * 64)])
    return Expect("unexpected-tensor", "warning", where={"tensor": "ln_0_bias_5", "layer": 5, "layer_type": "kVit"})


def _m_shape(src: Path, dst: Path) -> Expect:
    def edit(rs: list[TocRecord]) -> list[TocRecord]:
        r = next(r for r in rs if r.name == "pre_att_ns_0")
        r.rows, r.cols, r.stride = 2, r.cols // 2, r.cols // 2
        return rs
    rebuild(src, dst, toc_records=edit)
    return Expect("shape-mismatch", where={"tensor": "pre_att_ns_0", "layer": 0, "layer_type": "kGemma"})


def _m_shape_vit(src: Path, dst: Path) -> Expect:
    def edit(rs: list[TocRecord]) -> list[TocRecord]:
        r = next(r for r in rs if r.name == "qkv_ein_w_1")
        r.rows, r.cols, r.stride = r.cols, r.rows, r.rows
        return rs
    rebuild(src, dst, toc_records=edit)
    return Expect("shape-mismatch", where={"tensor": "qkv_ein_w_1", "layer": 1, "layer_type": "kVit"})


def _m_bias_type(src: Path, dst: Path) -> Expect:
    name = "attn_out_b_0"
    vals = decode_tensor(src, name)
    rec = TocRecord.make(name, Type.BF16, *vals.shape)
    rebuild(src, dst, replace={name: (rec, codecs.encode("BF16", vals))})
    return Expect("type-unsupported", where={"tensor": name, "layer": 0, "layer_type": "kVit"},
                  message_contains=("F32",))


def _m_f64_norm(src: Path, dst: Path) -> Expect:
    vals = decode_tensor(src, "c_final_norm")
    rec = TocRecord.make("c_final_norm", Type.F64, *vals.shape)
    rebuild(src, dst, replace={"c_final_norm": (rec, vals.astype("<f8").tobytes())})
    return Expect("type-unsupported", where={"tensor": "c_final_norm"})


def _att_w_from_ein(src: Path, layer: int) -> tuple[TocRecord, bytes]:
    cfg = config_of(src)
    lc = cfg.layer_configs[layer]
    H, D, Dh = lc.heads, lc.model_dim, lc.qkv_dim
    ein = decode_tensor(src, f"att_ein_{layer}").reshape(H, D, Dh)
    w = ein.transpose(1, 0, 2).reshape(D, H * Dh)
    return TocRecord.make(f"att_w_{layer}", Type.BF16, D, H * Dh), codecs.encode("BF16", w)


def _m_both_forms(src: Path, dst: Path) -> Expect:
    rec, data = _att_w_from_ein(src, 0)
    rebuild(src, dst, add=[(rec, rec.name, data)])
    return Expect("both-forms", where={"tensor": "att_w_0", "layer": 0, "layer_type": "kGemma"})


def _m_half_gating(src: Path, dst: Path) -> Expect:
    vals = decode_tensor(src, "gating_ein_1")
    F = vals.shape[0] // 2
    r1 = TocRecord.make("gating1_w_1", Type.BF16, F, vals.shape[1])
    rebuild(src, dst, drop=("gating_ein_1",), add=[(r1, r1.name, codecs.encode("BF16", vals[:F]))])
    return Expect("missing-tensor", where={"tensor": "gating2_w_1", "layer": 1, "layer_type": "kGemma"})


def _e_e0_no_embedding(d: bytearray) -> Expect:
    set_key(d, "Bc_embedding", b"Cc_embedding")  # no valid type prefix any more: gemma.cpp skips the key
    return Expect("missing-tensor", where={"tensor": "c_embedding"})


def _e_e0_unknown_name(d: bytearray) -> Expect:
    off, _ = blob_range(d, "$linear_w_1")
    set_key(d, "$linear_w_1", b"$linear w_1")
    return Expect("unknown-tensor", where={"tensor": "linear w_1", "blob": "$linear w_1", "offset": off},
                  also=frozenset({"missing-tensor"}))


def _e_e0_missing_layer_tensor(d: bytearray) -> Expect:
    set_key(d, "Bpre_ff_ns_0", b"xpre_ff_ns_0")  # no type prefix: gemma.cpp skips the key
    return Expect("missing-tensor", where={"tensor": "pre_ff_ns_0", "layer": 0, "layer_type": "kGemma"})


# ---- compat ----
def _m_vit_type2(src: Path, dst: Path) -> Expect:
    cfg = config_of(src)
    cfg.schema_revision = "2025-05"
    for lc in cfg.vit_config.layer_configs:
        lc.type = 2
    rebuild(src, dst, config=cfg, layout="v1")
    return Expect("legacy-only", "warning", message_contains=("Invalid enum 2",))


def _m_nuq(src: Path, dst: Path) -> Expect:
    rebuild(src, dst)
    return Expect("runtime-unsupported", "warning", message_contains=("NUQ",))


# ---- deep ----
def _deep_bytes(src: Path, tensor: str, edit: Callable[[bytearray, int], Expect]) -> Callable[[Path], tuple[Path, Expect]]:
    def apply(tmp: Path) -> tuple[Path, Expect]:
        data = bytearray(src.read_bytes())
        off, _ = blob_range(data, tensor)
        exp = edit(data, off)
        exp.deep = True
        out = tmp / "mutated.sbs"
        out.write_bytes(bytes(data))
        return out, exp
    return apply


def _d_nan(d: bytearray, off: int) -> Expect:
    poke(d, off + 2 * 77, struct.pack("<H", 0x7FC0))  # bf16 NaN at flat index 77
    return Expect("non-finite", where={"tensor": "c_embedding", "offset": off}, message_contains=("flat index 77",))


def _d_all_zero(d: bytearray, off: int) -> Expect:
    _, size = blob_range(d, "linear_w_1")
    poke(d, off, bytes(size))
    return Expect("all-zero", "warning", where={"tensor": "linear_w_1", "offset": off})


def _d_neg_zero(d: bytearray, off: int) -> Expect:
    poke(d, off + 1000, b"\x80")
    return Expect("sfp-noncanonical", "warning", where={"tensor": "gating_ein_0", "offset": off},
                  message_contains=("flat index 1000",))


def _d_i8_scale(d: bytearray, off: int) -> Expect:
    poke(d, off + 3 * 132, struct.pack("<H", 0x7FC0))  # inv_scale of group 3 := NaN
    return Expect("scale-invalid", where={"tensor": "linear_w_0", "offset": off + 3 * 132},
                  message_contains=("first group 3",))


def _d_nuq_table(d: bytearray, off: int) -> Expect:
    g = next(g for g in range(5, 64) if d[off + g * 144 + 15] != d[off + g * 144 + 14])
    table = bytes(d[off + g * 144:off + g * 144 + 16])
    swapped = table[:14] + table[15:16] + table[14:15]
    poke(d, off + g * 144, swapped)
    return Expect("nuq-table-invalid", where={"tensor": "qkv_ein_1", "offset": off + g * 144},
                  message_contains=(f"first group {g}",))


def _m_norm_plus_one(src: Path, dst: Path) -> Expect:
    from sbs_tools.tensors import RMS_NORM_BASES, split_name

    repl = {}
    with sbs_tools.open(src) as f:
        for rec in f.toc:
            if split_name(rec.name)[0] in RMS_NORM_BASES:
                vals = np.array(f.tensor(rec.name)) + 1.0
                repl[rec.name] = (rec, codecs.encode(Type(rec.type), vals))
    rebuild(src, dst, replace=repl)
    return Expect("norm-suspicious", "warning", deep=True, where={"tensor": "c_final_norm"})


CATALOGUE: list[Mutation] = [
    # format
    Mutation("empty-file", _m_empty),
    Mutation("gguf", _m_gguf),
    Mutation("safetensors", _m_safetensors),
    Mutation("hdf5", _m_hdf5),
    Mutation("mediapipe-task", _m_task),
    # container
    Mutation("bad-magic-v1", _bytes_mutation(G2_V1, _e_bad_magic_v1)),
    Mutation("bad-magic-v2-trailer", _bytes_mutation(G2_V2, _e_bad_magic_v2)),
    Mutation("file-bytes-v1", _bytes_mutation(G2_V1, _e_size_v1)),
    Mutation("file-bytes-v2", _bytes_mutation(G2_V2, _e_size_v2_header)),
    Mutation("appended-v2", _bytes_mutation(G2_V2, _e_appended_v2)),
    Mutation("too-many-blobs-v1", _bytes_mutation(G2_V1, _e_too_many_v1)),
    Mutation("too-many-blobs-v2", _bytes_mutation(G2_V2, _e_too_many_v2)),
    Mutation("empty-store", _bytes_mutation(G2_V2, _e_empty_store_v2)),
    Mutation("directory-out-of-bounds", _bytes_mutation(G2_V1, _e_dir_oob_v1)),
    Mutation("blob-out-of-bounds", _bytes_mutation(G2_V2, _e_blob_oob)),
    Mutation("blob-misaligned", _bytes_mutation(G2_V2, _e_misaligned)),
    Mutation("blob-gap-v2", _gap(G2_V2)),
    Mutation("blob-gap-v1", _gap(G2_V1)),
    Mutation("blob-overlap", _overlap),
    Mutation("zero-size-blob", _extra_blob_then(_e_zero_size)),
    Mutation("duplicate-key", _extra_blob_then(_e_duplicate)),
    Mutation("bad-key-nul", _bytes_mutation(G2_V2, _e_bad_key_nul)),
    Mutation("bad-key-empty", _extra_blob_then(_e_empty_key)),
    Mutation("bad-key-nonascii", _extra_blob_then(_e_nonascii_key)),
    Mutation("bad-key-layer-999", _extra_blob_then(_e_layer_999)),
    Mutation("nonzero-padding-placeholder", _bytes_mutation(G2_V2, _e_nonzero_padding)),
    Mutation("nonzero-padding-blob", _bytes_mutation(G2_V1, _e_nonzero_padding_after_blob)),
    Mutation("end-not-aligned-v1", _bytes_mutation(G2_V1, _e_trailing_v1)),
    Mutation("bad-placeholder", _bytes_mutation(G2_V2, _e_bad_placeholder)),
    # metadata
    Mutation("config-missing", _rebuilt(G2_V2, _m_config_missing)),
    Mutation("config-undecodable", _bytes_mutation(G2_V2, _e_config_undecodable)),
    # 99 would be a Model newer than this release (newer-format); 5 in PostQKType {0, 1, 8} is invalid
    Mutation("config-invalid-enum", _config_word("layer_configs[0].post_qk", 5)),
    Mutation("config-invalid-bool", _config_word("absolute_pe", 7)),
    Mutation("config-invalid-string-too-long", _config_word("display_name", 65)),
    Mutation("config-invalid-vector-too-long", _config_word("attention_window_sizes", 8388609)),  # > 8 Mi
    Mutation("config-invalid-nan", _rebuilt(G2_V2, _m_config_nan)),
    Mutation("config-invalid-layers", _rebuilt(G2_V2, _m_config_layers)),
    Mutation("config-invalid-windows", _rebuilt(G2_V2, _m_config_windows)),
    Mutation("config-invalid-qkv-dim", _config_word("layer_configs[1].qkv_dim", 2048,
                                                    where={"layer": 1, "layer_type": "kGemma"})),
    Mutation("config-invalid-vit-type", _rebuilt(VIT, _m_vit_as_gemma)),
    Mutation("config-extra-fields", _rebuilt(G2_V2, _m_config_extra)),
    Mutation("config-missing-fields", _rebuilt(G2_V2, _m_config_old_writer)),
    Mutation("toc-missing", _rebuilt(G2_V2, _m_toc_missing)),
    Mutation("toc-undecodable", _bytes_mutation(G2_V2, _e_toc_undecodable)),
    Mutation("toc-blob-missing", _rebuilt(G2_V2, _m_toc_blob_missing)),
    Mutation("toc-duplicate", _rebuilt(G2_V2, _m_toc_duplicate)),
    Mutation("toc-field-mismatch", _rebuilt(G2_V2, _m_toc_fields)),
    Mutation("blob-not-in-toc", _rebuilt(G2_V2, _m_blob_not_in_toc)),
    Mutation("tensor-size-mismatch", _rebuilt(G2_V2, _m_size_mismatch)),
    Mutation("weight-type-mismatch", _rebuilt(G2_V2, _m_weight_type)),
    Mutation("scale-invalid-toc", _rebuilt(G2_V2, _m_scale_zero)),
    Mutation("scale-ignored", _rebuilt(G2_V2, _m_scale_ignored)),
    Mutation("tokenizer-unavailable", _rebuilt(G2_V2, _m_tokenizer_missing)),
    Mutation("tokenizer-absent", _rebuilt(G2_V2, _m_tokenizer_absent)),
    Mutation("tokenizer-invalid", _rebuilt(G2_V2, _m_tokenizer_invalid)),
    Mutation("vocab-mismatch-tokenizer", _rebuilt(G2_V2, _m_vocab_tokenizer)),
    Mutation("vocab-mismatch-embedding", _rebuilt(G2_V2, _m_vocab_embedding)),
    # layers
    Mutation("missing-norm", _rebuilt(G2_V2, _drop("pre_att_ns_1", 1, "kGemma"))),
    Mutation("missing-qk-norm", _rebuilt(G3_1B, _drop("key_norm_2", 2, "kGemma"))),
    Mutation("missing-linear", _rebuilt(G2_V2, _drop("linear_w_0", 0, "kGemma"))),
    Mutation("missing-att-ein-vit-model", _rebuilt(VIT, _drop("att_ein_0", 0, "kGemma"))),
    Mutation("missing-vit-tensor", _rebuilt(VIT, _drop("ln_1_scale_1", 1, "kVit"))),
    Mutation("missing-image-tensor", _rebuilt(VIT, _drop("img_head_kernel", None, None))),
    Mutation("missing-half-gating", _rebuilt(G2_BF16, _m_half_gating)),
    Mutation("unexpected-tensor", _rebuilt(G2_V2, _m_unexpected)),
    Mutation("unexpected-vit-tensor", _rebuilt(VIT, _m_unexpected_vit)),
    Mutation("shape-mismatch", _rebuilt(G2_V2, _m_shape)),
    Mutation("shape-mismatch-vit", _rebuilt(VIT, _m_shape_vit)),
    Mutation("type-unsupported-bias", _rebuilt(VIT, _m_bias_type)),
    Mutation("type-unsupported-f64", _rebuilt(G2_V2, _m_f64_norm)),
    Mutation("both-forms", _rebuilt(G2_BF16, _m_both_forms)),
    Mutation("pre2025-missing-embedding", _bytes_mutation(E0, _e_e0_no_embedding)),
    Mutation("pre2025-unknown-name", _bytes_mutation(E0, _e_e0_unknown_name)),
    Mutation("pre2025-missing-layer-tensor", _bytes_mutation(E0, _e_e0_missing_layer_tensor)),
    # compat
    Mutation("legacy-vit-type-2", _rebuilt(VIT, _m_vit_type2)),
    Mutation("runtime-nuq", _rebuilt(G2_NUQ, _m_nuq)),
    # deep
    Mutation("deep-non-finite", _deep_bytes(G2_BF16, "c_embedding", _d_nan)),
    Mutation("deep-all-zero", _deep_bytes(G2_V2, "linear_w_1", _d_all_zero)),
    Mutation("deep-sfp-noncanonical", _deep_bytes(G2_V2, "gating_ein_0", _d_neg_zero)),
    Mutation("deep-i8-scale", _deep_bytes(G2_I8, "linear_w_0", _d_i8_scale)),
    Mutation("deep-nuq-table", _deep_bytes(G2_NUQ, "qkv_ein_1", _d_nuq_table)),
    Mutation("deep-norm-suspicious", _rebuilt(G2_BF16, _m_norm_plus_one)),
]
