"""sbs hash: digests per tensor/blob/file over the mmap, manifests (text/JSON), --check like sha256sum -c."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

import sbs_tools
from sbs_tools import hashing
from sbs_tools.cli import main

from .conftest import CORPUS

SRC = CORPUS / "v2/gemma3-1b-tiny-sfp.sbs"


def test_digests_are_plain_hashes_of_the_bytes():
    data = SRC.read_bytes()
    m = hashing.hash_files([SRC], per="file", algo="sha256")
    assert m.files[0].entries[0].digest == hashlib.sha256(data).hexdigest()
    m = hashing.hash_files([SRC], per="blob", algo="sha256")
    with sbs_tools.open(SRC) as f:
        keys = [e.key for e in f.directory.entries]
        by = {e.name: e for e in m.files[0].entries}
        assert [e.name for e in m.files[0].entries] == keys
        for e in f.directory.entries:
            assert by[e.key].digest == hashlib.sha256(data[e.offset:e.offset + e.size]).hexdigest()
    xxhash = pytest.importorskip("xxhash")
    m = hashing.hash_files([SRC])
    entries = {e.name: e for e in m.files[0].entries}
    with sbs_tools.open(SRC) as f:
        info = f.tensors["linear_w_0"]
        assert entries["linear_w_0"].digest == xxhash.xxh64(data[info.offset:info.offset + info.bytes]).hexdigest()
        assert entries["linear_w_0"].scale == pytest.approx(1.6) and entries["linear_w_0"].type == "SFP"
    assert set(entries) == set(f.tensors) | {"config", "tokenizer"}


def test_per_tensor_digests_survive_relayout(tmp_path):
    """Same tensors in a V1 file: identical per-tensor manifest, different per-blob/file digests."""
    from sbs_tools.toc import TocRecord
    from sbs_tools.writer import write_model

    with sbs_tools.open(SRC) as f:
        tensors = [(TocRecord.make(n, i.type, i.rows, i.cols, i.scale), f.raw(n).tobytes()) for n, i in
                   f.tensors.items()]
        write_model(tmp_path / "v1.sbs", f.config, tensors, f.tokenizer_bytes, layout="v1")
    a = hashing.hash_file(SRC)
    b = hashing.hash_file(tmp_path / "v1.sbs")
    assert [(e.name, e.digest) for e in a.entries] == [(e.name, e.digest) for e in b.entries]
    assert hashing.hash_file(SRC, per="file").entries[0].digest != \
        hashing.hash_file(tmp_path / "v1.sbs", per="file").entries[0].digest


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("per", ["tensor", "blob", "file"])
def test_check_detects_changes(tmp_path, monkeypatch, as_json, per):
    work = tmp_path / "model dir"  # a space in the path: text manifests quote it
    work.mkdir()
    target = work / "m.sbs"
    shutil.copy(SRC, target)
    m = hashing.hash_files([target], per=per)
    mpath = tmp_path / ("m.json" if as_json else "m.txt")
    mpath.write_text(json.dumps(m.to_dict()) if as_json else m.to_text())
    assert {ln.status for ln in hashing.check(mpath)} == {"OK"}
    with sbs_tools.open(target) as f:
        off = f.tensors["qkv_ein_3"].offset + 5
    data = bytearray(target.read_bytes())
    data[off] ^= 0x01
    target.write_bytes(bytes(data))
    lines = hashing.check(mpath)
    failed = [ln for ln in lines if ln.status != "OK"]
    if per == "file":
        assert [ln.status for ln in failed] == ["FAILED"]
    else:
        assert [(ln.name, ln.status) for ln in failed] == [("qkv_ein_3", "FAILED")]
        assert "digest differs" in failed[0].detail


def test_check_reports_scale_type_missing_extra(tmp_path):
    from sbs_tools.toc import TocRecord
    from sbs_tools.writer import write_model

    with sbs_tools.open(SRC) as f:
        cfg, tok = f.config, f.tokenizer_bytes
        tensors = [(TocRecord.make(n, i.type, i.rows, i.cols, i.scale), f.raw(n).tobytes()) for n, i in
                   f.tensors.items()]
    write_model(tmp_path / "a.sbs", cfg, tensors, tok)
    mpath = tmp_path / "a.json"
    mpath.write_text(json.dumps(hashing.hash_files([tmp_path / "a.sbs"]).to_dict()))
    changed = [(TocRecord.make(r.name, r.type, r.rows, r.cols, 2.0 if r.name == "att_ein_0" else r.scale), d)
               for r, d in tensors if r.name != "key_norm_5"]
    changed.append((TocRecord.make("extra_w", 2, 1, 4), b"\0" * 8))
    write_model(tmp_path / "a.sbs", cfg, changed, tok, overwrite=True)
    status = {ln.name: (ln.status, ln.detail) for ln in hashing.check(mpath)}
    assert status["att_ein_0"] == ("FAILED", "scale was 1, now 2")
    assert status["key_norm_5"][0] == "MISSING"
    assert status["extra_w"][0] == "EXTRA"
    assert status["qkv_ein_0"] == ("OK", "")


def test_cli_hash_and_check(tmp_path, capsys, monkeypatch):
    target = tmp_path / "m.sbs"
    shutil.copy(SRC, target)
    monkeypatch.chdir(tmp_path)
    assert main(["hash", "m.sbs"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# sbs-hash v1 algo=xxh64 per=tensor\n")
    assert "m.sbs::att_ein_0  sfp 512x64 scale=1\n" in text and "m.sbs::linear_w_0  sfp 128x384 scale=1.6\n" in text
    (tmp_path / "SUMS").write_text(text)
    assert main(["hash", "--check", "SUMS", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["hash", "--check", "SUMS"]) == 0
    assert "m.sbs::c_embedding: OK" in capsys.readouterr().out
    assert main(["hash", "m.sbs", "--json", "--algo", "sha256", "--per", "blob"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["format"] == "sbs-hash" and d["algo"] == "sha256" and d["per"] == "blob"
    # damage the tokenizer blob: check exits 1 and names it
    with sbs_tools.open(target) as f:
        off = f.blobs["tokenizer"].offset + 10
    data = bytearray(target.read_bytes())
    data[off] ^= 0xFF
    target.write_bytes(bytes(data))
    assert main(["hash", "-c", "SUMS", "--quiet"]) == 1
    cap = capsys.readouterr()
    assert "m.sbs::tokenizer: FAILED" in cap.out and "did NOT match" in cap.err
    assert main(["hash", "--check", "SUMS", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    # usage errors
    assert main(["hash"]) == 2
    assert main(["hash", "m.sbs", "--algo", "md5"]) == 2
    (tmp_path / "BAD").write_text("not a manifest line\n")
    assert main(["hash", "--check", "BAD"]) == 2
    target.unlink()
    assert main(["hash", "--check", "SUMS"]) == 1
    assert "UNREADABLE" in capsys.readouterr().out


def test_manifest_relative_to_its_directory(tmp_path, monkeypatch):
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(SRC, d / "m.sbs")
    monkeypatch.chdir(d)
    (d / "SUMS").write_text(hashing.hash_files(["m.sbs"]).to_text())
    monkeypatch.chdir(tmp_path)
    assert {ln.status for ln in hashing.check(d / "SUMS")} == {"OK"}
