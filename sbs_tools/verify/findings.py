"""Findings, reports and the registry of finding codes.

Every check of ``sbs verify`` emits :class:`Finding` records with a stable
kebab-case ``code``. :data:`CODES` documents each code once (default
severity, the check family it belongs to, one line of meaning); the docs
table in ``docs/verify.md`` and the JUnit grouping are derived from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


@dataclass(frozen=True)
class CodeInfo:
    severity: Severity
    family: str
    doc: str


#: Check families, in report order (one JUnit test case per family per file).
FAMILIES = {
    "format": "is it a BlobStore at all",
    "container": "header, directory, blob placement and padding",
    "metadata": "config, toc, tensor sizes and types, weight type",
    "tokenizer": "embedded SentencePiece model and vocabulary sizes",
    "layers": "tensors each LLM / ViT layer needs, by layer type",
    "compat": "which gemma.cpp generations load and run the file",
    "deep": "decoded tensor values (--deep)",
    "run": "a forward pass with the numpy decoder (--run)",
}

_E, _W, _I = "error", "warning", "info"

#: Findings that mean "this input could not be used at all" (exit 2), not "this .sbs file has errors".
UNREADABLE_CODES = frozenset({"not-sbs", "io-error", "not-found", "is-directory", "not-regular-file",
                              "permission-denied", "stdin-unsupported", "file-changed", "host-unreachable",
                              "remote-timeout", "remote-error", "remote-unsupported", "range-unsupported"})

CODES: dict[str, CodeInfo] = {
    # format
    "not-sbs": CodeInfo(_E, "format", "Not a BlobStore: names the format when recognisable (GGUF, safetensors, "
                                      "HDF5/Keras, zip/.task, git-lfs pointer, HTML, empty)."),
    "io-error": CodeInfo(_E, "format", "The file cannot be opened or read."),
    "not-found": CodeInfo(_E, "format", "No file at that path."),
    "is-directory": CodeInfo(_E, "format", "The path is a directory, not a file."),
    "not-regular-file": CodeInfo(_E, "format", "The path is a FIFO, device or socket: never opened (it could "
                                               "block)."),
    "permission-denied": CodeInfo(_E, "format", "The file exists but cannot be read by this user."),
    "file-changed": CodeInfo(_E, "format", "The file was truncated, replaced or modified while it was read: read "
                                           "it again once the writer has finished."),
    "host-unreachable": CodeInfo(_E, "format", "URL input: the server cannot be reached (DNS, refused or broken "
                                               "connection), after the retries of docs/remote.md."),
    "remote-timeout": CodeInfo(_E, "format", "URL input: the server did not answer within the timeout "
                                             "(SBS_REMOTE_TIMEOUT, default 30 s), after the retries."),
    "remote-error": CodeInfo(_E, "format", "URL input: the server answered with an error status other than "
                                           "401/403/404, or the store failed otherwise."),
    "remote-unsupported": CodeInfo(_E, "format", "URL input: fsspec (pip install 'sbs-tools[remote]') or the "
                                                 "package for the URL's protocol is not installed."),
    "range-unsupported": CodeInfo(_E, "format", "URL input: the server ignores HTTP Range requests; refused "
                                                "rather than downloading the whole file (--allow-full-download "
                                                "downloads it once)."),
    "stdin-unsupported": CodeInfo(_E, "format", "'-' was given: .sbs files are read by random access, not from "
                                                "a pipe."),
    # container
    "bad-magic": CodeInfo(_E, "container", "The header that gemma.cpp would use lacks the 'SBS\\n' magic "
                                           "(damaged header, or a V2 file whose trailer is gone)."),
    "file-size-mismatch": CodeInfo(_E, "container", "Header file_bytes differs from the file size: truncated, "
                                                    "or bytes appended."),
    "too-many-blobs": CodeInfo(_E, "container", "num_blobs beyond what current gemma.cpp reads (kMaxBlobs 1 Mi "
                                                "since 0d8948f7): a V2 count above 1 Mi, a V1 count of 1 Mi, or "
                                                "a V1 count above it without a V2 trailer. Smaller counts that "
                                                "older builds reject (16384 from 2025-07-31, 65536 in May 2025) "
                                                "are reported in the compatibility table only."),
    "empty-store": CodeInfo(_E, "container", "num_blobs is 0 in a header that is not a V2 placeholder."),
    "directory-out-of-bounds": CodeInfo(_E, "container", "The directory does not fit in the file."),
    "blob-out-of-bounds": CodeInfo(_E, "container", "A blob extends past the end of the file."),
    "blob-misaligned": CodeInfo(_E, "container", "A blob offset is not a multiple of 256 (gemma.cpp asserts)."),
    "blob-gap": CodeInfo(_E, "container", "Blobs are not back to back: a gap before a blob."),
    "blob-overlap": CodeInfo(_E, "container", "A blob starts before the previous one ends, or overlaps the "
                                              "V2 directory."),
    "zero-size-blob": CodeInfo(_E, "container", "A directory entry with size 0 (gemma.cpp asserts)."),
    "duplicate-key": CodeInfo(_E, "container", "Two directory entries share a key (readers disagree on "
                                               "which wins)."),
    "bad-key": CodeInfo(_E, "container", "A key that is empty, not printable ASCII, not NUL-padded, or has a "
                                         "layer number >= 999 (gemma.cpp asserts)."),
    "nonzero-padding": CodeInfo(_W, "container", "Padding bytes that every writer zeroes are not zero "
                                                 "(corruption or a foreign writer)."),
    "end-not-aligned": CodeInfo(_W, "container", "The file end is not where the layout puts it (trailing bytes "
                                                 "after a V1 store, or a V2 file not padded to 64 KiB)."),
    "bad-placeholder": CodeInfo(_W, "container", "The V2 front placeholder header is damaged or unusual "
                                                 "(gemma.cpp ignores it)."),
    "v1-end-padded": CodeInfo(_I, "container", "V1 file padded to 64 KiB (written 2025-05-06..07-30; "
                                               "pre-2025 readers reject it)."),
    # metadata
    "config-missing": CodeInfo(_E, "metadata", "A single-file model (has a toc) without a config blob."),
    "config-undecodable": CodeInfo(_E, "metadata", "The config blob's structure cannot be parsed."),
    "config-invalid": CodeInfo(_E, "metadata", "The config parses but holds invalid values: bad enum, "
                                               "NaN/Inf, string/vector too long, inconsistent counts or dims."),
    "config-extra-fields": CodeInfo(_I, "metadata", "The config has fields this tool does not know "
                                                    "(written by a newer gemma.cpp); where they are. They are "
                                                    "skipped by their objects' length prefixes."),
    "newer-format": CodeInfo(_W, "metadata", "An enum value, element type or trailing field newer than this "
                                             "release: shown as its number, everything known is still "
                                             "checked; update sbs_tools to check the rest."),
    "config-missing-fields": CodeInfo(_I, "metadata", "The config lacks trailing fields (older writer); "
                                                      "defaults apply."),
    "scales-invalid": CodeInfo(_W, "metadata", "Pre-2025 file: the Fscales blob is not an f32 array or holds "
                                               "too few scales."),
    "scales-extra": CodeInfo(_I, "metadata", "Pre-2025 file: Fscales holds more scales than tensors use "
                                             "(gemma.cpp asserts all are consumed)."),
    "pre-2025-format": CodeInfo(_I, "metadata", "Pre-2025 multi-file format: no config/toc; type-prefixed keys."),
    "prefixed-names": CodeInfo(_I, "metadata", "Dec 2024 - May 2025 single-file format with type-prefixed "
                                               "tensor names."),
    "toc-missing": CodeInfo(_E, "metadata", "A single-file model (has a config) without a toc blob."),
    "toc-undecodable": CodeInfo(_E, "metadata", "The toc blob cannot be parsed."),
    "toc-duplicate": CodeInfo(_E, "metadata", "Two toc records name the same tensor (gemma.cpp asserts)."),
    "toc-blob-missing": CodeInfo(_E, "metadata", "The toc names a tensor that has no blob (gemma.cpp aborts)."),
    "blob-not-in-toc": CodeInfo(_W, "metadata", "A blob that no toc record describes (gemma.cpp ignores it)."),
    "toc-field-mismatch": CodeInfo(_W, "metadata", "element_bytes / num_elements / stride disagree with type "
                                                   "and shape (gemma.cpp recomputes them; older tools may not)."),
    "tensor-size-mismatch": CodeInfo(_E, "metadata", "Blob size differs from type x rows x cols "
                                                     "(gemma.cpp asserts)."),
    "weight-type-mismatch": CodeInfo(_E, "metadata", "config.weight differs from the smallest tensor type "
                                                     "(gemma.cpp asserts)."),
    "scale-invalid": CodeInfo(_E, "metadata", "A zero tensor scale, or (--deep) a non-finite/zero I8 group "
                                              "scale, or a zero point that is not an integer within int32 "
                                              "range (the I8 encoder writes no other)."),
    "scale-ignored": CodeInfo(_W, "metadata", "A norm/bias with scale != 1: gemma.cpp ignores the scale there."),
    # tokenizer
    "tokenizer-missing": CodeInfo(_W, "tokenizer", "No tokenizer in the file (absent or 'unavailable'): "
                                                   "gemma.cpp needs --tokenizer."),
    "tokenizer-invalid": CodeInfo(_E, "tokenizer", "The tokenizer blob is not a SentencePiece model."),
    "vocab-mismatch": CodeInfo(_E, "tokenizer", "Tokenizer vocabulary, config vocab_size and embedding rows "
                                                "disagree."),
    "bpe-vocab-size": CodeInfo(_W, "tokenizer", "The HF-BPE tokenizer blob (tokenizer_kind kHfBpe) has more token "
                                                "ids than config.vocab_size: gemma.cpp does not check it; ids "
                                                "beyond vocab_size index past the embedding."),
    # layers
    "missing-tensor": CodeInfo(_E, "layers", "A tensor the layer type needs is absent."),
    "unknown-tensor": CodeInfo(_E, "layers", "Pre-2025 file: a key whose tensor name gemma.cpp does not know "
                                             "(it aborts on unknown names when there is no toc)."),
    "unexpected-tensor": CodeInfo(_W, "layers", "A tensor no layer of this config uses (gemma.cpp ignores it)."),
    "shape-mismatch": CodeInfo(_E, "layers", "rows x cols differ from the dims in the config "
                                             "(gemma.cpp aborts)."),
    "type-unsupported": CodeInfo(_E, "layers", "An element type gemma.cpp cannot use for this tensor "
                                               "(e.g. biases must be F32)."),
    "both-forms": CodeInfo(_E, "layers", "Both forms of an exactly-one-of pair (e.g. att_ein_N and att_w_N): "
                                         "current gemma.cpp aborts."),
    # compat
    "unloadable": CodeInfo(_E, "compat", "No gemma.cpp generation loads the file, although no other check "
                                         "failed (e.g. a model enum no build accepts)."),
    "legacy-only": CodeInfo(_W, "compat", "Valid for an older gemma.cpp but not loadable by current gemma.cpp."),
    "runtime-unsupported": CodeInfo(_W, "compat", "Current gemma.cpp (or, when it cannot read the file, every "
                                                  "generation that can) reads the file but cannot run it "
                                                  "(e.g. NUQ attention weights)."),
    "global-timescale-missing": CodeInfo(_W, "compat", "Gemma 3 1B/4B/12B/27B config without "
                                                       "use_global_timescale (or false): gemma.cpp since "
                                                       "2025-10-24 (1bdde1a) silently runs the global layers "
                                                       "with RoPE base 1e4 instead of 1e6; `sbs repair` appends "
                                                       "the flag."),
    "global-timescale-lm": CodeInfo(_I, "compat", "Text-only Gemma 3 (GEMMA3_*_LM) with use_global_timescale "
                                                  "false, as upstream's canonical config has it: global layers "
                                                  "run with RoPE base 1e4 (the VLM configs of the same size use "
                                                  "1e6)."),
    "rope-quirk": CodeInfo(_I, "compat", "Gemma 3 270M: gemma.cpp runs the global layers with RoPE base 10,000 "
                                         "where the original model uses 1,000,000."),
    "vit-pool-grid": CodeInfo(_W, "compat", "Gemma 3 + ViT whose patch grid is not 64x64: gemma.cpp's "
                                            "AvgPool4x4 reads past its matrix, so its image path crashes."),
    "vision-quirk": CodeInfo(_I, "compat", "Gemma 3 + ViT: gemma.cpp normalizes only the first image token "
                                           "(mm_embed_norm) and attends causally over the image; the published "
                                           "model normalizes every token and attends bidirectionally."),
    # deep
    "non-finite": CodeInfo(_E, "deep", "NaN or Inf values (count and first index)."),
    "all-zero": CodeInfo(_W, "deep", "Every value of the tensor is zero."),
    "sfp-noncanonical": CodeInfo(_W, "deep", "SFP byte 0x80 (negative zero), which gemma.cpp never writes "
                                             "and debug builds assert on."),
    "nuq-table-invalid": CodeInfo(_E, "deep", "A NUQ cluster table that is not ascending (corrupt group)."),
    "norm-suspicious": CodeInfo(_W, "deep", "RMSNorm weights centred near 1: the 1+w convention was probably "
                                            "applied twice."),
    "mxfp4-block-invalid": CodeInfo(_E, "deep", "An MXFP4 block the encoder never writes: exponent 0xFF, or "
                                                "exponent 0 with non-zero nibbles (the ee051c9c parallel "
                                                "zero-block overwrite): it decodes as 0 (garbage on AVX-512 bf16)."),
    "block-straddle": CodeInfo(_W, "layers", "A Q4_0/MXFP4 tensor whose rows are not a multiple of 32 values: "
                                             "its 32-value blocks straddle rows, which gemma.cpp's splits and "
                                             "SIMD decode assume never happens."),
    "deep-skipped": CodeInfo(_I, "deep", "A tensor that could not be decoded (its size is already wrong)."),
    # run
    "run-failed": CodeInfo(_E, "run", "An exception while loading or running the model (--run), with the LLM or "
                                      "ViT layer or the tensor where it happened."),
    "run-non-finite": CodeInfo(_E, "run", "NaN/Inf in the embedding rows, the activations or the logits of the "
                                          "test run (--run), with the first layer where it appears."),
    "run-degenerate": CodeInfo(_E, "run", "The test run's logits are constant across the vocabulary, or "
                                          "identical for different inputs (--run)."),
    "run-skipped": CodeInfo(_I, "run", "--run did not run the model (or its image path): structural errors, or "
                                       "a file the numpy decoder does not run (the reason is given)."),
}


def family_of(code: str) -> str:
    info = CODES.get(code)
    return info.family if info else "metadata"


@dataclass(frozen=True)
class Finding:
    """One thing ``verify`` found: what (code, message, hint) and where.

    ``offset`` is an absolute byte offset in the file; ``blob`` a directory
    key; ``tensor`` a tensor name; ``layer`` the index inside its list
    (LLM or ViT) and ``layer_type`` "kGemma" / "kVit" says which list.
    """

    code: str
    severity: Severity
    message: str
    offset: int | None = None
    blob: str | None = None
    tensor: str | None = None
    layer: int | None = None
    layer_type: str | None = None
    hint: str | None = None

    @property
    def family(self) -> str:
        return family_of(self.code)

    def location(self) -> dict[str, Any]:
        loc = {"offset": self.offset, "blob": self.blob, "tensor": self.tensor, "layer": self.layer,
               "layer_type": self.layer_type}
        return {k: v for k, v in loc.items() if v is not None}

    def where(self) -> str:
        """Human location: ``layer 1 (kGemma), tensor att_ein_1, offset 1234``."""
        parts = []
        if self.layer is not None:
            parts.append(f"{'ViT layer' if self.layer_type == 'kVit' else 'layer'} {self.layer}"
                         + (f" ({self.layer_type})" if self.layer_type else ""))
        if self.tensor is not None:
            parts.append(f"tensor {self.tensor}")
        elif self.blob is not None:
            parts.append(f"blob {self.blob}")
        if self.offset is not None:
            parts.append(f"offset {self.offset}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"code": self.code, "severity": self.severity, "message": self.message}
        d.update(self.location())
        if self.hint:
            d["hint"] = self.hint
        return d


def finding(code: str, message: str, *, severity: Severity | None = None, **where: Any) -> Finding:
    """Make a :class:`Finding` with the code's default severity (checked against the registry)."""
    if code not in CODES:
        raise KeyError(f"unregistered finding code {code!r}")
    return Finding(code, severity or CODES[code].severity, message, **where)


@dataclass
class Generation:
    """Whether one gemma.cpp generation loads (and runs) the file."""

    key: str  # stable id, e.g. "2025-10-15+"
    label: str  # human label with commits
    loads: bool
    runs: bool | None = None  # None: not evaluated (loads is False)
    reasons: list[str] = field(default_factory=list)  # why not (or caveats when it loads)

    def to_dict(self) -> dict[str, Any]:
        return {"generation": self.key, "label": self.label, "loads": self.loads, "runs": self.runs,
                "reasons": list(self.reasons)}


@dataclass
class Report:
    """Everything ``verify`` found about one file."""

    path: str
    findings: list[Finding] = field(default_factory=list)
    compat: list[Generation] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # layout, era, model, ... (for display)
    deep: bool = False
    #: Fleet scans (``verify_many``): the input's size and modification stamp when it was checked
    #: (``--jsonl`` resumes on them); shown as ``input`` in the JSON when set.
    stat: dict[str, Any] | None = None
    run: bool = False

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    @property
    def unreadable(self) -> "Finding | None":
        """The finding that made the input unusable (a bad path, or not a BlobStore at all), else None.
        The CLI reports such a file as one ``error:`` line and exits 2, like every other command."""
        return next((f for f in self.findings if f.code in UNREADABLE_CODES), None)

    def ok_strict(self) -> bool:
        """No errors and no warnings."""
        return not self.errors and not self.warnings

    def codes(self, *severities: Severity) -> list[str]:
        sev = severities or SEVERITIES
        return [f.code for f in self.findings if f.severity in sev]

    def by_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "unreadable": self.unreadable is not None, "deep": self.deep,
                "run": self.run, "facts": self.facts,
                "findings": [f.to_dict() for f in self.findings],
                "compat": [g.to_dict() for g in self.compat]} | ({"input": self.stat} if self.stat else {})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Report":
        """The inverse of :meth:`to_dict` (a ``--jsonl`` record read back)."""
        findings = [Finding(x["code"], x["severity"], x["message"], x.get("offset"), x.get("blob"), x.get("tensor"),
                            x.get("layer"), x.get("layer_type"), x.get("hint")) for x in d.get("findings", [])]
        compat = [Generation(g["generation"], g["label"], g["loads"], g.get("runs"), list(g.get("reasons", [])))
                  for g in d.get("compat", [])]
        return cls(d["path"], findings, compat, dict(d.get("facts", {})), bool(d.get("deep")), d.get("input"),
                   bool(d.get("run")))
