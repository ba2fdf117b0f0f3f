"""Nothing lost, ever: every writing command against every way an output can hit something that exists.

For each command that writes and each hazard (the output is the input by path, by ``./`` path, by
symlink, by hard link; an unrelated existing file; a non-empty directory; the current directory) the
command must exit 2 with one ``error:`` line, and every file in the work directory must be
byte-identical afterwards. With ``--force`` (where the hazard allows it) only the intended file changes.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from sbs_tools.cli import main

from .conftest import CORPUS

MODEL = CORPUS / "broken" / "broken-misaligned-offset.sbs"  # repairable, so repair really writes
CLEAN = CORPUS / "v2" / "gemma2-2b-tiny-bf16.sbs"


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (or 'dir'/'link -> target') of everything under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = f"link -> {os.readlink(p)}"
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass(frozen=True)
class Writer:
    """A writing command: ``argv(input, output)``, the output suffix it wants, and its input file."""

    name: str
    argv: Callable[[str, str], list[str]]
    suffix: str
    source: Path = MODEL


def _convert_source(work: Path) -> Path:
    from sbs_tools.convert.synthetic import TinySpec, random_weights, write_gguf

    spec = TinySpec(family=3, layers=1, model_dim=32, heads=2, kv_heads=1, qkv_dim=16, ff=32, vocab=64)
    p = work / "model.gguf"
    write_gguf(p, spec, random_weights(spec))
    return p


WRITERS = [
    Writer("repair", lambda i, o: ["repair", i, "-o", o], ".sbs"),
    Writer("convert", lambda i, o: ["convert", i, o, "--type", "bf16"], ".sbs", source=Path("gguf")),
    Writer("export", lambda i, o: ["export", i, o], ".safetensors", source=CLEAN),
    Writer("export-npz", lambda i, o: ["export", i, o, "--raw"], ".npz", source=CLEAN),
    Writer("report", lambda i, o: ["report", i, "-o", o], ".html"),
    Writer("verify-junit", lambda i, o: ["verify", i, "--junit", o], ".xml", source=CLEAN),
]


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A directory with the inputs and an unrelated file in it; the current directory during the test."""
    d = tmp_path / "work"
    d.mkdir()
    shutil.copy(MODEL, d / "model.sbs")
    shutil.copy(CLEAN, d / "clean.sbs")
    (d / "README.md").write_text("my notes\n")
    sub = d / "sub"
    sub.mkdir()
    (sub / "keep.txt").write_text("keep me\n")
    monkeypatch.chdir(d)
    return d


def _input(w: Writer, work: Path) -> Path:
    if w.source == Path("gguf"):
        return _convert_source(work)
    return work / ("model.sbs" if w.source == MODEL else "clean.sbs")


def _hazard(kind: str, src: Path, work: Path, suffix: str) -> str:
    """The output path for a hazard (creating links as needed)."""
    if kind == "same-path":
        return str(src)
    if kind == "dot-slash":
        return f"./{src.name}"
    if kind == "symlink":
        (work / f"link{suffix}").symlink_to(src.name)
        return f"link{suffix}"
    if kind == "hardlink":
        os.link(src, work / f"hard{suffix}")
        return f"hard{suffix}"
    if kind == "existing-file":
        return "README.md"
    if kind == "non-empty-dir":
        return "sub"
    if kind == "current-dir":
        return "."
    raise AssertionError(kind)


HAZARDS = ["same-path", "dot-slash", "symlink", "hardlink", "existing-file", "non-empty-dir", "current-dir"]
CODES = {"same-path": "output-is-input", "dot-slash": "output-is-input", "symlink": "output-is-input",
         "hardlink": "output-is-input", "existing-file": "output-exists", "non-empty-dir": "output-is-directory",
         "current-dir": "output-is-directory"}


@pytest.mark.parametrize("hazard", HAZARDS)
@pytest.mark.parametrize("w", WRITERS, ids=lambda w: w.name)
def test_refused_and_nothing_changes(work, capsys, w, hazard):
    src = _input(w, work)
    out = _hazard(hazard, src, work, w.suffix)
    before = snapshot(work)
    rc = main(w.argv(str(src), out))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith(f"error: [{CODES[hazard]}] "), err
    assert snapshot(work) == before


@pytest.mark.parametrize("hazard", ["same-path", "dot-slash", "symlink", "hardlink"])
@pytest.mark.parametrize("w", WRITERS, ids=lambda w: w.name)
def test_force_never_writes_over_the_input(work, capsys, w, hazard):
    src = _input(w, work)
    out = _hazard(hazard, src, work, w.suffix)
    before = snapshot(work)
    rc = main(w.argv(str(src), out) + ["--force"])
    assert rc == 2 and "output-is-input" in capsys.readouterr().err
    assert snapshot(work) == before


@pytest.mark.parametrize("w", WRITERS, ids=lambda w: w.name)
def test_force_replaces_only_the_intended_file(work, capsys, w):
    src = _input(w, work)
    target = work / f"old{w.suffix}"
    target.write_text("an older output\n")
    before = snapshot(work)
    rc = main(w.argv(str(src), target.name) + ["--force"])
    assert rc in (0, 1), capsys.readouterr().err  # verify --junit exits 1 for a file with errors
    after = snapshot(work)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {target.name}
    assert target.read_bytes() != b"an older output\n"


def test_fresh_output_and_no_temporary_left(work, capsys):
    for w in WRITERS:
        src = _input(w, work)
        rc = main(w.argv(str(src), f"new-{w.name}{w.suffix}"))
        assert rc in (0, 1), (w.name, capsys.readouterr().err)
        assert (work / f"new-{w.name}{w.suffix}").stat().st_size > 0
    assert not [p for p in work.rglob("*") if p.name.startswith(".") or p.name.endswith(".partial")]


# -- export --hf: a directory output ------------------------------------------------------------------------

def test_hf_into_current_directory_is_refused(work, capsys):
    before = snapshot(work)
    assert main(["export", "clean.sbs", ".", "--hf"]) == 2
    assert capsys.readouterr().err.startswith("error: [output-not-empty] ")
    assert snapshot(work) == before


def test_hf_into_non_empty_directory_is_refused(work, capsys):
    before = snapshot(work)
    assert main(["export", "clean.sbs", "sub", "--hf"]) == 2
    assert "output-not-empty" in capsys.readouterr().err
    assert snapshot(work) == before


def test_hf_into_a_file_is_refused(work, capsys):
    before = snapshot(work)
    assert main(["export", "clean.sbs", "README.md", "--hf"]) == 2
    assert "output-exists" in capsys.readouterr().err
    assert snapshot(work) == before


def test_hf_force_writes_only_its_files(work, capsys):
    before = snapshot(work)
    assert main(["export", "clean.sbs", ".", "--hf", "--force"]) == 0, capsys.readouterr().err
    after = snapshot(work)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {"config.json", "model.safetensors", "tokenizer.model"}


def test_hf_force_never_replaces_an_input(work, capsys):
    """An input named like a file --hf writes (model.safetensors) is not overwritten, even with --force."""
    shutil.copy(CLEAN, work / "sub" / "model.safetensors")
    before = snapshot(work)
    assert main(["export", "sub/model.safetensors", "sub", "--hf", "--force"]) == 2
    assert "output-is-input" in capsys.readouterr().err
    assert snapshot(work) == before


def test_hf_failure_leaves_nothing(work, capsys):
    """A new directory for an export that fails is removed again, and no temporary file is left."""
    before = snapshot(work)
    assert main(["export", "README.md", "newdir", "--hf"]) == 2
    assert snapshot(work) == before


# -- the input is never modified, and repair --in-place is the one way to replace it --------------------------

def test_in_place_keeps_the_original_as_backup(work, capsys):
    original = (work / "model.sbs").read_bytes()
    assert main(["repair", "model.sbs", "--in-place", "--backup", ".bak"]) == 0, capsys.readouterr().err
    assert (work / "model.sbs.bak").read_bytes() == original
    assert (work / "model.sbs").read_bytes() != original


def test_in_place_never_overwrites_a_backup(work, capsys):
    (work / "model.sbs.bak").write_text("an older backup\n")
    before = snapshot(work)
    assert main(["repair", "model.sbs", "--in-place", "--backup", ".bak"]) == 2
    assert "backup-exists" in capsys.readouterr().err
    assert snapshot(work) == before


def test_interrupted_write_leaves_nothing(work):
    """Ctrl-C while a PendingFile is open: the temporary file is gone, the destination never appears."""
    from sbs_tools.output import PendingFile

    with pytest.raises(KeyboardInterrupt):
        with PendingFile(work / "out.bin") as pf:
            pf.file.write(b"partial")
            raise KeyboardInterrupt
    assert not (work / "out.bin").exists()
    assert not [p for p in work.iterdir() if p.name.endswith(".partial")]


def test_synthetic_writers_follow_the_policy(tmp_path):
    """The API's checkpoint writers (used to build convert inputs) keep an existing file or a non-empty
    directory unless overwrite=True, and leave no temp file behind."""
    from sbs_tools.convert.synthetic import TinySpec, random_weights, write_gguf, write_hf
    from sbs_tools.output import OutputError

    spec = TinySpec(family=3, layers=1, model_dim=32, heads=2, kv_heads=1, qkv_dim=16, ff=32, vocab=64)
    w = random_weights(spec)
    g = tmp_path / "m.gguf"
    g.write_bytes(b"mine")
    with pytest.raises(OutputError):
        write_gguf(g, spec, w)
    assert g.read_bytes() == b"mine"
    write_gguf(g, spec, w, overwrite=True)
    assert g.read_bytes()[:4] == b"GGUF"
    d = tmp_path / "hf"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(OutputError):
        write_hf(d, spec, w)
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]
    write_hf(d, spec, w, overwrite=True)
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "m.gguf"]
