"""Every error code the code base can produce, found by reading the source (AST), for docs/errors.md.

Three kinds:

* **exceptions** -- ``SbsError`` subclasses' default ``code`` class attributes and every
  ``code="..."`` keyword of a call that builds an exception (``raise X(..., code=...)``), with
  the module and function that raises it and the message text;
* **problems** -- ``Problem("code", ...)`` records ``open()`` attaches to ``SbsFile.problems``
  (``open(strict=True)`` raises some of them as ``ContainerError``);
* **findings** -- ``sbs_tools.verify.CODES``, the registry of ``verify`` findings.

``python -m tests.fuzz.error_codes`` prints them; ``test_error_docs.py`` checks that
``docs/errors.md`` names every one.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sbs_tools", "inference")
#: ``code=f"{key}-undecodable"`` in sbsfile.py: the keys it is used with.
DYNAMIC = {"{key}-undecodable": ["config-undecodable", "toc-undecodable"]}


@dataclass(frozen=True)
class Site:
    code: str
    kind: str  # "exception" | "class-default" | "problem"
    module: str
    function: str
    cls: str  # exception class (or "Problem")
    message: str


def _str(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                       for v in node.values)
    return None


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "?")


def _sites_in(path: Path) -> list[Site]:
    mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    tree = ast.parse(path.read_text(), str(path))
    out: list[Site] = []

    def visit(node, func: str, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, f"{cls}.{child.name}" if cls else child.name, cls)
                continue
            if isinstance(child, ast.ClassDef):
                for stmt in child.body:
                    if (isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "code" for t in stmt.targets)
                            and _str(stmt.value)):
                        doc = ast.get_docstring(child) or ""
                        out.append(Site(_str(stmt.value), "class-default", mod, child.name, child.name,
                                        doc.split("\n")[0]))
                visit(child, func, child.name)
                continue
            if isinstance(child, ast.Call):
                name = _callee(child)
                msg = _str(child.args[0]) if child.args else None
                for kw in child.keywords:
                    if kw.arg != "code":
                        continue
                    values = [kw.value.body, kw.value.orelse] if isinstance(kw.value, ast.IfExp) else [kw.value]
                    for v in values:
                        if (code := _str(v)) is not None:
                            for c in DYNAMIC.get(code, [code]):
                                out.append(Site(c, "exception", mod, func, name, msg or ""))
                if name in ("Problem", "_problem") and child.args and (code := _str(child.args[0])):
                    out.append(Site(code, "problem", mod, func, "Problem",
                                    _str(child.args[2]) if len(child.args) > 2 else ""))
            if isinstance(child, ast.Assign) and any(getattr(t, "id", "") == "code" for t in child.targets) \
                    and isinstance(child.value, ast.IfExp) and (func in raises_code_var or func in problem_code_var):
                # code = "a" if ... else "b"; later raise X(..., code=code) or Problem(code, ...)
                for v in (child.value.body, child.value.orelse):
                    if (code := _str(v)) is not None:
                        if func in raises_code_var:
                            out.append(Site(code, "exception", mod, func, raises_code_var[func], ""))
                        if func in problem_code_var:
                            out.append(Site(code, "problem", mod, func, "Problem", ""))
            visit(child, func, cls)

    # Functions that raise an exception built with ``code=code`` (a local variable).
    raises_code_var: dict[str, str] = {}
    problem_code_var: set[str] = set()

    def scan(node, func: str, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scan(child, f"{cls}.{child.name}" if cls else child.name, cls)
            elif isinstance(child, ast.ClassDef):
                scan(child, func, child.name)
            else:
                if isinstance(child, ast.Raise) and isinstance(child.exc, ast.Call) and any(
                        kw.arg == "code" and isinstance(kw.value, ast.Name) and kw.value.id == "code"
                        for kw in child.exc.keywords):
                    raises_code_var[func] = _callee(child.exc)
                if isinstance(child, ast.Call) and _callee(child) == "Problem" and child.args \
                        and isinstance(child.args[0], ast.Name) and child.args[0].id == "code":
                    problem_code_var.add(func)
                scan(child, func, cls)

    scan(tree, "<module>", None)
    visit(tree, "<module>", None)
    return out


#: Codes raised with a code the AST cannot see (``raise ContainerError(p.message, code=p.code)``).
MANUAL = [Site("file-size-mismatch", "exception", "sbs_tools.sbsfile", "SbsFile.__init__", "ContainerError",
               "(strict) the header claims more bytes than the file has"),
          Site("blob-out-of-bounds", "exception", "sbs_tools.sbsfile", "SbsFile.__init__", "ContainerError",
               "(strict) a blob extends past the end of the file")]


def exception_sites() -> list[Site]:
    out = list(MANUAL)
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out += _sites_in(path)
    return [s for s in out if re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s.code)]


def finding_codes() -> dict:
    from sbs_tools.verify import CODES

    return dict(CODES)


def main() -> None:
    by_code: dict[str, list[Site]] = {}
    for s in exception_sites():
        by_code.setdefault(s.code, []).append(s)
    for code in sorted(by_code):
        print(code)
        for s in by_code[code]:
            print(f"    {s.kind:13s} {s.module}:{s.function} {s.cls}: {s.message[:90]}")
    print(f"\n{len(by_code)} exception/problem codes; {len(finding_codes())} verify finding codes")


if __name__ == "__main__" and "--write" not in __import__("sys").argv:
    main()


# -- docs/errors.md ----------------------------------------------------------------------------

#: The check behind each read-path code, in words (the fuzz suite's home turf).
READ_PATH = {
    "empty-file": "The file has 0 bytes (`read_directory`).",
    "not-sbs": "Neither the first nor the last 16 bytes carry the `SBS\\n` magic (`read_directory`; "
               "`verify` names the format when it recognises it: GGUF, safetensors, zip, HTML, ...).",
    "bad-magic": "The front header is a V2 placeholder (magic, `num_blobs` 0) but the last 16 bytes are no "
                 "BlobStore header: a truncated V2 file, or its trailer overwritten (`read_directory`).",
    "too-many-blobs": "Beyond gemma.cpp's `kMaxBlobs` of 1048576 (since 0d8948f7) (`read_directory`): a V1 "
                      "front header of exactly 1048576 blobs (gemma.cpp commits to V1 and asserts "
                      "`num_blobs < kMaxBlobs`), a V1 count above it with no V2 trailer to fall back to, or a V2 "
                      "trailer count above it. Smaller counts are read, in either layout, and are no finding: the "
                      "compatibility table says which builds reject them (16384 and more from 2025-07-31 until "
                      "0d8948f7, 65536 and more in May 2025; DeepSeek V4 has 33,792).",
    "empty-store": "The effective header (V1 front or V2 trailer) says `num_blobs` = 0 (`read_directory`).",
    "directory-out-of-bounds": "`16 + 32 * num_blobs` bytes of header and directory do not fit in the file "
                               "(V1), or the V2 directory would start before offset 256 (`read_directory`). "
                               "Checked *before* anything is read or allocated from the count.",
    "file-size-mismatch": "Header `file_bytes` != actual size. `open(strict=True)` raises it when the header "
                          "claims *more* bytes (truncated file); otherwise it is a problem (error) only.",
    "blob-out-of-bounds": "A directory range `[offset, offset+size)` extends past the end of the file. "
                          "`open(strict=True)` raises it; `SbsFile.raw` / `blob_view` / `read_blob` raise it for "
                          "such a blob when opened leniently, `read_into` for a read past the end of an "
                          "unchanged file.",
    "file-changed": "`FileChangedError`: the file was truncated, replaced or modified while it was read. Bulk "
                    "reads (`verify --deep`, `hash`, `export`, `diff`, `report --deep`, `SbsFile.tensor`) go "
                    "through `SbsFile.read_into` / `chunks` (`pread` on the descriptor kept open since `open`, "
                    "not the memory map, which would die with SIGBUS): a short read, or a size / inode / "
                    "modification time differing from those seen at open, raises it. Offset = where the read "
                    "came back short. Read the file again once the writer has finished.",
    "fields-structure": "IFields structure: a blob whose size is not a multiple of 4 (`as_words`); a length "
                        "prefix running past the blob; a string longer than its record; a vector claiming more "
                        "elements than words left in the blob (`read_struct`). Offset = byte in the blob.",
    "fields-value": "IFields value: an enum value the schema does not know, a bool > 1, a NaN/Inf float, a "
                    "string > 64 words or with a zero / non-ASCII word, a vector > 65536 (`read_struct`); or a "
                    "value the writer cannot encode (`write_struct`).",
    "config-undecodable": "The `config` blob's structure cannot be parsed by any known schema revision "
                          "(`decode_config`, `SbsFile`); or it is larger than 64 MiB (`SbsFile`).",
    "config-invalid": "The `config` blob parses structurally but holds values no schema revision (2025-10, "
                      "2025-05) accepts, e.g. an obsolete model enum or ViT layer type 2 vs 1 (`decode_config`).",
    "toc-undecodable": "The `toc` blob cannot be walked record by record, has more records than the file has "
                       "blobs (each must name a distinct blob), or is larger than 64 MiB "
                       "(`decode_toc`, `SbsFile`).",
    "no-such-blob": "`SbsFile.raw(name)`: no blob key or tensor name `name`.",
    "no-such-tensor": "`SbsFile.tensor(name)` / `dump.tensor_report`: no tensor `name`.",
    "tensor-size-mismatch": "`SbsFile.tensor(name)`: the blob is shorter than type x rows x cols needs (or the "
                            "type has no size), so it cannot be decoded.",
    "io-error": "The file cannot be opened (`SbsFile`: `os.open` failed; `inputs`: another OS error), a read of "
                "it fails (`read_into`), or it is read after `close()`.",
    "not-found": "No file at the path, or a parent is not a directory (`inputs.check_input_file`).",
    "is-directory": "The path is a directory (`inputs.check_input_file`): never memory-mapped.",
    "not-regular-file": "A FIFO, device or socket (`inputs.check_input_file`): never opened, so nothing blocks.",
    "permission-denied": "The file exists but this user cannot read it (`inputs.check_input_file`).",
    "stdin-unsupported": "The path is `-`: `.sbs` files need random access, so standard input is refused.",
    "bad-key": "Writer: a key that is not 1..16 ASCII characters (`writer.key_bytes`).",
    "duplicate-key": "Writer: the same key added twice (`BlobWriter.add`).",
    "zero-size-blob": "Writer: an empty blob (`BlobWriter.add`, `add_stream`).",
    "stream-size-mismatch": "Writer: `add_stream` produced a different number of bytes than declared.",
    "bad-layout": "Writer: layout other than `v1`/`v2` (`BlobWriter`).",
    "unknown-type": "An element type number/name that does not exist, or UNKNOWN where a size is needed "
                    "(`types.type_from_name`, `types.packed_bytes`).",
    "bad-count": "A negative element count (`types.packed_bytes`).",
}

#: Read-path modules (``sbs_tools.<name>``) whose codes section 1 lists.
READ_MODULES = ("blobstore", "fields", "config", "toc", "sbsfile", "writer", "dump", "summary", "types", "errors",
                "inputs")

PROBLEMS = {
    "bad-placeholder": "warning/info: V2 front placeholder damaged (gemma.cpp ignores it), holding a blob count "
                       "above 1 Mi (gemma.cpp falls back to the trailer), or its `file_bytes` is not 65536.",
    "file-size-mismatch": "error: header `file_bytes` differs from the file size.",
    "bad-key": "error: empty key, key not printable ASCII, or non-zero bytes after the key's NUL.",
    "duplicate-key": "error: two directory entries share a key.",
    "zero-size-blob": "error: a directory entry of size 0.",
    "blob-out-of-bounds": "error: a blob extends past the end of the file.",
    "blob-misaligned": "error: a blob offset that is not a multiple of 256.",
    "blob-gap": "error: blobs not back to back (a gap before a blob).",
    "blob-overlap": "error: a blob starting before the previous one ends, blobs overlapping, or the V2 "
                    "directory overlapping the payload.",
    "end-not-aligned": "warning: trailing bytes after a V1 store not padded to 64 KiB, a V2 file not a 64 KiB "
                       "multiple, or a file ending inside the last blob's padding.",
    "v1-end-padded": "info: V1 file padded to 64 KiB (pre-2025 readers reject it).",
    "nonzero-padding": "warning: non-zero bytes in padding (`check_layout` with the buffer; used by verify).",
    "shape-unknown": "info: pre-2025 file without toc: shapes shown as 1 x N.",
    "scales-invalid": "warning: `Fscales` is not an f32 array, or holds fewer scales than tensors take one.",
    "scales-extra": "info: `Fscales` holds more scales than are used.",
}


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _template(msg: str) -> str:
    return re.sub(r"\{[^{}]*\}", "…", msg).strip() or "(message built at run time)"


def markdown() -> str:
    sites = exception_sites()
    exc = [s for s in sites if s.kind in ("exception", "class-default")]
    by_code: dict[str, list[Site]] = {}
    for s in exc:
        by_code.setdefault(s.code, []).append(s)

    def is_read(s: Site) -> bool:
        return s.module.split(".")[-1] in READ_MODULES and s.module.startswith("sbs_tools.")

    lines = [
        "# Error codes",
        "",
        "Everything `sbs_tools` (and `inference`) refuses is an `SbsError` (or a subclass) with a stable",
        "kebab-case `code`, a message, and where known the byte `offset`, `blob`, `tensor` and `layer`.",
        "The CLI prints `error: [code] message (location)` on one line of stderr and exits 2. No other exception",
        "escapes a loader, whatever the input bytes: the fuzz suite (`tests/fuzz`) checks exactly that for",
        "every public entry point (`open`, every accessor, `tensor()`, `dump`, `summarize`, `verify(deep=True)`,",
        "`sbs repair --dry-run`, `sbs inspect/dump --json`, `inference.load`), together with a CPU-time bound",
        "proportional to the file size and a peak-allocation bound of 64 x the file size + 16 MiB.",
        "",
        "Three families of codes exist:",
        "",
        "1. **Exceptions** (`SbsError.code`) — section 1 (the read path: `sbs_tools.open`, its accessors and",
        "   decoders, the writer) and section 2 (every other module).",
        "2. **Problems** `open()` records in `SbsFile.problems` instead of raising (section 3); `verify`",
        "   reports them as findings.",
        "3. **`verify` findings** (section 4): what `sbs verify` reports; never raised.",
        "",
        "## Exit codes",
        "",
        "One rule for every command:",
        "",
        "| exit | meaning |",
        "|---|---|",
        "| 0 | done, and the answer is good |",
        "| 1 | done, and the answer is bad: a file has errors (`verify`; `repair` could not produce a clean file, "
        "or `--partial` wrote one that still has errors), files differ (`diff`), digests do not match or files "
        "are missing (`hash --check`) |",
        "| 2 | could not be done: a usage error (`error: [usage] …`: a conflicting or meaningless flag combination, "
        "an invalid value), an input that is not a readable `.sbs` file (bad path: `not-found`, `is-directory`, "
        "`not-regular-file`, `permission-denied`, `stdin-unsupported`; or not a BlobStore: `not-sbs`), an output "
        "the output policy refuses (`output-*`), a file that changed while it was read (`file-changed`) |",
        "| 130 | interrupted (Ctrl-C, SIGTERM): temporary outputs are removed |",
        "",
        "`sbs verify` checks every file it is given: an unusable one is an `error:` line on stderr (and an entry",
        "with `\"unreadable\": true` in `--json`) and makes the exit code 2; a damaged BlobStore (`bad-magic`,",
        "`file-size-mismatch`, ...) is a finding like any other (exit 1). `-` never means standard input:",
        "`.sbs` files are read by random access, so a pipe is refused (`stdin-unsupported`); save the stream to",
        "a file first. `sbs report -o -` writes the page to standard output.",
        "",
        "## Output policy",
        "",
        "Every command that writes (`repair`, `convert`, `export` incl. `--hf`, `report`, `verify --junit`) goes",
        "through `sbs_tools.output`: an output that is one of the inputs (same path, another spelling, a",
        "symlink or a hard link) is refused (`output-is-input`) even with `--force`; an existing file",
        "(`output-exists`) or a non-empty directory (`output-not-empty`, `export --hf`) only with `--force`,",
        "and then only the files the command writes are replaced; nothing is ever deleted. Each file is",
        "written to a hidden temporary file beside it, fsynced and renamed into place; on an error or Ctrl-C",
        "the temporary file is removed. `sbs repair --in-place --backup SUFFIX` is the one way to replace an",
        "input, and it keeps the original under the backup name.",
        "",
        "One output is appended to on purpose: `sbs verify --jsonl OUT`, the log a fleet scan resumes from.",
        "It follows the same checks (`output-is-input` when it is one of the inputs, `output-is-directory`,",
        "a missing or read-only directory), but an existing OUT is kept and appended to without `--force`:",
        "appending loses nothing. Each line is written whole, flushed and fsynced when its file is done; a",
        "line cut off by a kill is skipped on the next run. OUT is never read as a `.sbs` input, only for",
        "the records it holds (a rerun skips files recorded there with the same size and modification time).",
        "",
        "## Remote inputs",
        "",
        "URLs (`https://`, `s3://`, `gs://`, through fsspec: `pip install 'sbs-tools[remote]'`; `hf://` as",
        "the hub's resolve URL over the same HTTP path) are read in byte ranges (`sbs_tools.source`). A",
        "server that ignores `Range` is refused (`range-unsupported`) before its body is read, unless",
        "`--allow-full-download`; 404 (a missing file, bucket, repository or revision) is `not-found`,",
        "401/403 `permission-denied` (for `hf://`: set `HF_TOKEN`), other statuses `remote-error`, an",
        "unreachable host `host-unreachable`, no answer within `SBS_REMOTE_TIMEOUT` seconds (default 30,",
        "for connecting and between reads) `remote-timeout`, a file whose size or ETag changes between requests `file-changed`, a missing",
        "package for the protocol `remote-unsupported`. Retry policy: connection errors, timeouts, 429 and",
        "5xx answers are tried again, `SBS_REMOTE_RETRIES` tries in all (default 3), after 0.25 s, 0.5 s, ...;",
        "4xx answers, a refused `Range` and a changed file are never retried. All exit 2.",
        "",
        "This file is generated from the source by `python -m tests.fuzz.error_codes --write`;",
        "`tests/fuzz/test_error_docs.py` fails when a code in the source is missing here.",
        "",
        "## 1. Read path exceptions",
        "",
        "| code | exception | raised by | check |",
        "|---|---|---|---|",
    ]
    for code in sorted(by_code):
        ss = [s for s in by_code[code] if is_read(s)]
        if not ss:
            continue
        classes = sorted({s.cls for s in ss if s.cls not in ("(variable)",)}) or ["SbsError"]
        where = sorted({f"`{s.module.split('.', 1)[1]}.{s.function}`" if s.kind == "exception"
                        else f"`{s.cls}` default" for s in ss})
        desc = READ_PATH.get(code) or "; ".join(sorted({_template(s.message) for s in ss}))
        lines.append(f"| `{code}` | {', '.join(classes)} | {', '.join(where)} | {_md(desc)} |")
    lines += ["", "Class defaults (used when a subclass is raised without a specific code): "
              + ", ".join(f"`{s.cls}` `{s.code}`" for s in exc if s.kind == "class-default") + ".", "",
              "## 2. Exceptions of the other modules", "",
              "The check is the message the code raises (`…` = a value filled in at run time).", "",
              "| code | module | raised by | check |", "|---|---|---|---|"]
    rows = []
    for code in sorted(by_code):
        for s in by_code[code]:
            if is_read(s) or s.kind == "class-default":
                continue
            mod = s.module.replace(".__init__", "")
            rows.append((code, mod, s.function, _template(s.message) if s.message else READ_PATH.get(code, "")))
    seen = set()
    for code, mod, fn, msg in rows:
        if (code, mod, fn, msg) in seen:
            continue
        seen.add((code, mod, fn, msg))
        lines.append(f"| `{code}` | `{mod}` | `{fn}` | {_md(msg)} |")
    lines += ["", "## 3. Problems `open()` records (`SbsFile.problems`)", "",
              "`sbs_tools.blobstore.check_layout` and `SbsFile` record these instead of raising, so that a damaged",
              "file can still be inspected; `open(strict=False)` also records an undecodable config/toc",
              "(`config-undecodable`, `config-invalid`, `toc-undecodable`) here.", "",
              "| code | module | severity and check |", "|---|---|---|"]
    probs: dict[str, set[str]] = {}
    for s in sites:
        if s.kind == "problem":
            probs.setdefault(s.code, set()).add(s.module)
    for code in sorted(probs):
        lines.append(f"| `{code}` | {', '.join(f'`{m}`' for m in sorted(probs[code]))} | "
                     f"{_md(PROBLEMS.get(code, ''))} |")
    lines += ["", "## 4. `verify` findings", "",
              "Reported by `sbs_tools.verify` / `sbs verify` (never raised); see `docs/verify.md` for the",
              "checks in detail. Severity is the default; `--strict` fails on warnings too.", "",
              "| code | severity | family | meaning |", "|---|---|---|---|"]
    for code, info in sorted(finding_codes().items()):
        lines.append(f"| `{code}` | {info.severity} | {info.family} | {_md(info.doc)} |")
    return "\n".join(lines) + "\n"


def all_codes() -> set[str]:
    return {s.code for s in exception_sites()} | set(finding_codes())


if __name__ == "__main__" and "--write" in __import__("sys").argv:
    (ROOT / "docs" / "errors.md").write_text(markdown())
    print("wrote docs/errors.md")
