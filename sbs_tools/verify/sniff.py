"""Say what a file is when it is not a BlobStore (the ``not-sbs`` finding).

Users hand ``sbs verify`` whatever they downloaded: a GGUF for llama.cpp, a
Hugging Face safetensors shard, a Keras ``.h5``/``.keras``, a MediaPipe
``.task`` bundle, a git-lfs pointer instead of the weights, a login page.
:func:`identify` looks at the first bytes only and returns a short name plus
what to do about it.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import dataclass

from ..blobstore import MAGIC
from ..source import open_binary, stat_input

HEAD_BYTES = 4096


@dataclass(frozen=True)
class Identity:
    kind: str  # "gguf", "safetensors", "hdf5", "keras", "task", "zip", "pytorch", "tflite", ...
    description: str
    hint: str


def _zip_identity(path: str) -> Identity:
    try:
        with open_binary(path) as fh, zipfile.ZipFile(fh) as z:
            names = z.namelist()[:2000]
    except (zipfile.BadZipFile, OSError, ValueError):
        names = []
    lower = [n.lower() for n in names]
    if any(n.endswith(".tflite") or "tf_lite" in n for n in lower) or path.lower().endswith(".task"):
        return Identity("task", "a MediaPipe/LiteRT .task bundle (zip of TFLite models)",
                        "gemma.cpp cannot use LiteRT/TFLite models; download the gemma.cpp (.sbs) variant of "
                        "the model (e.g. the 'gemma.cpp' framework on Kaggle) instead")
    if any(n.endswith("config.json") for n in lower) and any(n.endswith(".weights.h5") for n in lower) \
            or path.lower().endswith(".keras"):
        return Identity("keras", "a Keras model archive (.keras)",
                        "export the checkpoint to .sbs with gemma.cpp's Python exporter "
                        "(compression/python SbsWriter), or download the gemma.cpp variant")
    if any(n.endswith("data.pkl") for n in lower):
        return Identity("pytorch", "a PyTorch checkpoint (zip with data.pkl)",
                        "convert it to .sbs first (gemma.cpp's python exporter), or download the gemma.cpp "
                        "variant of the model")
    return Identity("zip", "a zip archive", "unpack it; the .sbs file may be inside")


def identify(path: str | os.PathLike, size: int | None = None) -> Identity:
    """Best guess of a non-BlobStore file's format, from its first bytes."""
    path = path if isinstance(path, str) else os.fspath(path)
    size = stat_input(path, allow_empty=True).size if size is None else size
    if size == 0:
        return Identity("empty", "an empty file (0 bytes)",
                        "the download or copy did not complete; fetch the file again")
    with open_binary(path) as fh:
        head = fh.read(HEAD_BYTES)
    if head[:4] == b"GGUF":
        return Identity("gguf", "a GGUF file (llama.cpp format)",
                        "convert it with `sbs convert FILE.gguf OUT.sbs`")
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return Identity("hdf5", "an HDF5 file (Keras .h5 weights)",
                        "export the checkpoint to .sbs with gemma.cpp's Python exporter, or download the "
                        "gemma.cpp variant of the model")
    if head[:4] == b"PK\x03\x04" or head[:4] == b"PK\x05\x06":
        return _zip_identity(path)
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return Identity("tflite", "a TFLite flatbuffer", "gemma.cpp cannot use TFLite models; download the "
                                                          "gemma.cpp (.sbs) variant instead")
    if len(head) >= 10:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= 100_000_000 and head[8:9] == b"{" and n + 8 <= size:
            try:
                with open_binary(path) as fh:
                    fh.seek(8)
                    meta = json.loads(fh.read(min(n, 1 << 24)))
                if isinstance(meta, dict):
                    return Identity("safetensors", "a safetensors file (Hugging Face format)",
                                    "convert it to .sbs first (e.g. gemma.cpp's "
                                    "python/convert_from_safetensors.py for PaliGemma), or download the "
                                    "gemma.cpp variant of the model")
            except (ValueError, UnicodeDecodeError, OSError):
                pass
    if head.startswith(b"version https://git-lfs"):
        return Identity("git-lfs-pointer", "a git-lfs pointer file, not the weights",
                        "the repository was cloned without git-lfs: run `git lfs install && git lfs pull`")
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html")):
        return Identity("html", "an HTML page",
                        "the download returned a web page (login or redirect) instead of the file; download "
                        "it again with the right credentials")
    if head[:6] == b"\x93NUMPY":
        return Identity("npy", "a NumPy .npy array", "not a gemma.cpp weight file")
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return Identity("pickle", "a Python pickle (e.g. a PyTorch .bin checkpoint)",
                        "convert the checkpoint to .sbs first, or download the gemma.cpp variant of the model")
    if head[:2] == b"\x1f\x8b":
        return Identity("gzip", "a gzip archive (e.g. .tar.gz)", "unpack it; the .sbs file may be inside")
    if len(head) > 262 and head[257:262] == b"ustar":
        return Identity("tar", "a tar archive", "unpack it (tar xf); the .sbs file may be inside")
    if _looks_like_sentencepiece(path, size):
        return Identity("sentencepiece", "a SentencePiece tokenizer model (.spm)",
                        "this is the tokenizer, not the weights; pass it to gemma.cpp with --tokenizer")
    return Identity("unknown", "an unrecognised file", "check that this is the gemma.cpp .sbs weights file")


def _looks_like_sentencepiece(path: str, size: int) -> bool:
    if size > 64 << 20:
        return False
    try:
        import sentencepiece as spm

        with open_binary(path) as fh:
            sp = spm.SentencePieceProcessor(model_proto=fh.read())
        return sp.get_piece_size() > 0
    except Exception:  # noqa: BLE001 - any failure means "not a SentencePiece model"
        return False


def damaged_header_hint(head: bytes, tail: bytes, size: int) -> tuple[int, str] | None:
    """If the bytes look like a BlobStore whose magic was damaged, return (offset, description).

    ``head``/``tail`` are the first and last 16 bytes. A header is "plausible"
    when its num_blobs is small and its file_bytes equals the file size (V1
    front header or V2 trailer), or when its magic is a few bits away from
    ``SBS\\n``.
    """
    def plausible(raw: bytes, off: int) -> str | None:
        if len(raw) < 16:
            return None
        magic, n, fb = struct.unpack("<IIQ", raw[:16])
        if magic == MAGIC:
            return None
        if 0 < n < 65536 and fb == size:
            return f"the header at offset {off} has magic {magic:#010x} instead of 0x0a534253 ('SBS\\n')"
        if bin(magic ^ MAGIC).count("1") <= 4:
            return f"the header at offset {off} has magic {magic:#010x}, a damaged 'SBS\\n' (0x0a534253)"
        return None

    for raw, off in ((head, 0), (tail, size - 16)):
        why = plausible(raw, off)
        if why:
            return off, why
    return None
