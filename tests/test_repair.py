"""``sbs repair``: corpus and legacy files, every mutation of the verify catalogue, options and guarantees.

Every test hashes its input before and after (the input is never modified) and
checks that nothing is written when repair refuses.
"""
from __future__ import annotations

import hashlib
import importlib
import shutil
from pathlib import Path

import numpy as np
import pytest

import sbs_tools
from sbs_tools.errors import SbsError
from sbs_tools.repair import plan as repair_plan
from sbs_tools.repair import repair

from .conftest import CLEAN_CORPUS, CORPUS, LEGACY
from .mutations import CATALOGUE, G2_BF16, G2_V1, G2_V2, VIT

SP256 = CORPUS / "tiny_sp256.model"
SP512 = CORPUS / "tiny_sp512.model"
BROKEN = CORPUS / "broken"
TOLERATED_WARNINGS = {"tokenizer-missing", "unexpected-tensor", "blob-not-in-toc", "scale-ignored", "legacy-only",
                      "runtime-unsupported", "vit-pool-grid"}  # vit-pool-grid: the tiny ViTs are 8x8


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_of(path: Path) -> dict:
    """Everything a model is, independent of container layout: config, tokenizer, toc records, tensor bytes."""
    with sbs_tools.open(path) as f:
        return {
            "config": f.config.to_words() if f.config else None,
            "tokenizer": f.tokenizer_bytes,
            "tensors": {r.name: (r.type, r.rows, r.cols, r.scale, hashlib.sha256(f.raw(r.name)).hexdigest())
                        for r in f.toc},
        }


def run(path: Path, out: Path, **kw):
    """repair() with the input-unchanged and nothing-written-on-refusal guarantees checked."""
    before = sha(path)
    existed = out.exists()
    r = repair(path, out, **kw)
    assert sha(path) == before, "the input was modified"
    if r.status != "repaired" and not existed:
        assert not out.exists(), f"{r.status} but an output file was written"
    assert not list(out.parent.glob(".sbs-*")), "a temporary file was left behind"
    return r


def assert_clean(path: Path) -> None:
    rep = sbs_tools.verify_file(path)
    assert rep.ok, [f.to_dict() for f in rep.errors]
    assert not [f for f in rep.warnings if f.code not in TOLERATED_WARNINGS], [f.to_dict() for f in rep.warnings]


# -- the gemma.cpp corpus -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", CLEAN_CORPUS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_clean_corpus_nothing_to_repair(path, tmp_path):
    r = run(path, tmp_path / "out.sbs")
    with sbs_tools.open(path) as f:
        gemma3 = f.config.model in (14, 15, 16, 17)
    if not gemma3:
        assert r.status == "nothing-to-repair" and r.exit_code == 0
        assert not (tmp_path / "out.sbs").exists()
        return
    # Gemma 3 1B/4B written by 3ed403e lack use_global_timescale (addendum §6.3): the one thing to repair.
    assert r.status == "repaired" and r.exit_code == 0
    assert [i.action.kind for i in r.plan.items if i.status == "fix"] == ["set-global-timescale"]
    n = len(sbs_tools.open(path).tensors)
    assert r.proof_summary() == f"{n}/{n} tensors identical"
    with sbs_tools.open(path) as a, sbs_tools.open(tmp_path / "out.sbs") as b:
        words_old, words_new = a._metadata_words("config"), b._metadata_words("config")
        # the 3ed403e-compatible recipe: [m] + 1, then one word 1 after scale_base_names, nothing else
        assert words_new[0] == words_old[0] + 1 and list(words_new[1:]) == list(words_old[1:]) + [1]
        assert b.config.use_global_timescale and a.config.to_dict() | {"use_global_timescale": True} == \
            b.config.to_dict()
        for name in a.tensors:
            assert a.raw(name).tobytes() == b.raw(name).tobytes()
    assert not [x for x in sbs_tools.verify_file(tmp_path / "out.sbs").findings if x.code == "global-timescale-missing"]


def test_corpus_misaligned_offset(tmp_path):
    src = BROKEN / "broken-misaligned-offset.sbs"
    out = tmp_path / "fixed.sbs"
    r = run(src, out)
    assert r.status == "repaired" and r.exit_code == 0
    assert r.proof_summary() == "32/32 tensors identical"
    assert [i.action.kind for i in r.plan.items if i.status == "fix"] == ["relocate-blob"]
    assert_clean(out)
    # The bytes gemma.cpp wrote are where the repaired directory says: c_final_norm at the back-to-back offset.
    with sbs_tools.open(out) as f:
        assert f.blobs["c_final_norm"].offset == 65792
    a, b = src.read_bytes(), out.read_bytes()
    assert len(a) == len(b)
    with sbs_tools.open(out) as f:
        d = f.directory
        dir_start = d.dir_offset
    diff = [i for i in range(len(a)) if a[i] != b[i]] if a != b else []
    assert diff and min(diff) >= dir_start, "only the directory may differ from the damaged file"


def test_corpus_truncated_is_unrepairable(tmp_path):
    r = run(BROKEN / "broken-truncated.sbs", tmp_path / "out.sbs")
    assert r.status == "unrepairable" and r.exit_code == 1
    why = " ".join(x.reason for x in r.plan.refusals)
    assert "directory" in why and "gone" in why and "toc" in why


def test_corpus_missing_att_ein(tmp_path):
    src = BROKEN / "broken-vit-missing-att_ein_1.sbs"
    r = run(src, tmp_path / "out.sbs")
    assert r.status == "unrepairable" and r.exit_code == 1
    assert [(x.code, x.name) for x in r.plan.blocking] == [("missing-tensor", "att_ein_1")]
    # --partial writes the partial file, which verify still flags; exit 1.
    r = run(src, tmp_path / "partial.sbs", partial=True)
    assert r.status == "repaired" and r.forced and r.exit_code == 1
    rep = sbs_tools.verify_file(tmp_path / "partial.sbs")
    assert rep.codes("error") == ["missing-tensor"]


# -- older generations -----------------------------------------------------------------------------------------
def test_vit_type_2_renumbered(tmp_path):
    out = tmp_path / "out.sbs"
    r = run(LEGACY / "e2-gemma3-vit-type2-sfp.sbs", out)
    assert r.status == "repaired"
    # auto keeps V1; both files also get use_global_timescale (written before 2025-10-24)
    ref = tmp_path / "ref.sbs"
    run(LEGACY / "v1-gemma3-vit-sfp.sbs", ref)
    assert sha(out) == sha(ref)
    out2, ref2 = tmp_path / "out2.sbs", tmp_path / "ref2.sbs"
    run(LEGACY / "e2-gemma3-vit-type2-sfp.sbs", out2, target="current", layout="v2")
    run(CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs", ref2, target="current")  # what gemma.cpp 3ed403e wrote, +flag
    assert sha(out2) == sha(ref2)


def test_target_2025_05(tmp_path):
    out = tmp_path / "may.sbs"
    r = run(CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs", out, target="2025-05")
    assert r.status == "repaired"
    assert {a.kind for a in r.plan.actions} == {"renumber-vit", "convert-layout"}
    assert sha(out) == sha(LEGACY / "e2-gemma3-vit-type2-sfp.sbs")  # V1 + ViT type 2, as e9ecb77 wrote it
    gens = {g.key: g for g in r.report.compat}
    assert gens["2025-05-07"].loads and not gens["2025-10-15"].loads


def test_target_2025_05_refuses_i8(tmp_path):
    r = run(CORPUS / "v2" / "gemma2-2b-tiny-i8.sbs", tmp_path / "out.sbs", target="2025-05")
    assert r.status == "unrepairable"
    assert any(x.code == "type-unsupported" and "re-encoding" in x.reason for x in r.plan.refusals)


def test_prefixed_single_file(tmp_path):
    out = tmp_path / "out.sbs"
    r = run(LEGACY / "e1-gemma2-tiny-sfp.sbs", out, layout="v2")
    assert r.status == "repaired" and r.proof_summary() == "18/18 tensors identical"
    assert sha(out) == sha(CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs")


def test_pre2025_kept_unless_asked(tmp_path):
    r = run(LEGACY / "e0-gemma2-tiny-sfp.sbs", tmp_path / "out.sbs")
    assert r.status == "nothing-to-repair"
    r = run(LEGACY / "e0-gemma2-tiny-sfp.sbs", tmp_path / "out.sbs", target="current")
    assert r.status == "unrepairable"  # 2 layers: no model to deduce, and no --config-from
    assert "--config-from" in r.plan.refusals[0].reason


def test_pre2025_migration(tmp_path):
    ref = CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs"
    out = tmp_path / "out.sbs"
    r = run(LEGACY / "e0-gemma2-tiny-sfp.sbs", out, target="current", config_from=ref, tokenizer=SP256)
    assert r.status == "repaired"
    assert r.proof_summary() == "18/18 tensors identical; Fscales folded into the toc"
    assert sha(out) == sha(ref)  # byte for byte what gemma.cpp's SbsWriter wrote, scales included


def test_pre2025_round_trip(tmp_path):
    ref = CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs"
    e0 = tmp_path / "e0.sbs"
    r = run(ref, e0, target="pre-2025")
    assert r.status == "repaired"
    assert sha(e0) == sha(LEGACY / "e0-gemma2-tiny-sfp.sbs")
    back = tmp_path / "back.sbs"
    run(e0, back, target="current", config_from=ref, tokenizer=SP256, layout="v2")
    assert sha(back) == sha(ref)


def test_model_deduced_from_layer_count_is_checked(tmp_path):
    # --model gives gemma.cpp's canonical config; a tiny file does not fit it, and repair says so.
    r = run(LEGACY / "e0-gemma2-tiny-sfp.sbs", tmp_path / "out.sbs", target="current", model="gemma2-2b-sfp-it")
    assert r.status == "unrepairable"
    assert any(x.code == "tensor-size-mismatch" for x in r.plan.refusals)


# -- the verify mutation catalogue -----------------------------------------------------------------------------
#: Mutations repair must fix on its own: name -> clean source the result must equal as a model,
#: and whether it must even be byte-identical to that source.
REPAIRABLE = {
    "bad-magic-v1": (G2_V1, True), "bad-magic-v2-trailer": (G2_V2, True), "file-bytes-v1": (G2_V1, True),
    "file-bytes-v2": (G2_V2, True), "appended-v2": (G2_V2, True), "too-many-blobs-v1": (G2_V1, True),
    "too-many-blobs-v2": (G2_V2, True), "empty-store": (G2_V2, True), "directory-out-of-bounds": (G2_V1, True),
    "blob-out-of-bounds": (G2_V2, True), "blob-misaligned": (G2_V2, True), "blob-gap-v2": (G2_V2, True),
    "blob-gap-v1": (G2_V1, True), "blob-overlap": (G2_V2, False), "zero-size-blob": (G2_V2, False),
    "duplicate-key": (G2_V2, False), "bad-key-nul": (G2_V2, True), "bad-key-empty": (G2_V2, False),
    "bad-key-nonascii": (G2_V2, False), "bad-key-layer-999": (G2_V2, False),
    "nonzero-padding-placeholder": (G2_V2, True), "nonzero-padding-blob": (G2_V1, True),
    "end-not-aligned-v1": (G2_V1, True), "config-invalid-layers": (G2_V2, True),
    "config-invalid-qkv-dim": (G2_V2, True), "config-invalid-vit-type": (VIT, True),
    "toc-undecodable": (G2_V2, True), "toc-blob-missing": (G2_V2, True), "toc-duplicate": (G2_V2, True),
    "toc-field-mismatch": (G2_V2, True), "tensor-size-mismatch": (G2_V2, True),
    "weight-type-mismatch": (G2_V2, True), "scale-invalid-toc": (G2_V2, True), "shape-mismatch": (G2_V2, True),
    "both-forms": (G2_BF16, True), "legacy-vit-type-2": (VIT, False),
}
#: Mutations repair fixes given the missing piece: name -> (options, clean source).
WITH_OPTIONS = {
    "config-missing": ({"config_from": G2_V2}, G2_V2),
    "config-undecodable": ({"config_from": G2_V2}, G2_V2),
    "config-invalid-enum": ({"config_from": G2_V2}, G2_V2),
    "config-invalid-bool": ({"config_from": G2_V2}, G2_V2),
    "config-invalid-nan": ({"config_from": G2_V2}, G2_V2),
    "config-invalid-windows": ({"config_from": G2_V2}, G2_V2),
    "config-invalid-string-too-long": ({"config_from": G2_V2}, G2_V2),
    "config-invalid-vector-too-long": ({"config_from": G2_V2}, G2_V2),
    "tokenizer-invalid": ({"tokenizer": SP256}, G2_V2),
    "tokenizer-unavailable": ({"tokenizer": SP256}, G2_V2),
    "tokenizer-absent": ({"tokenizer": SP256}, G2_V2),
    "vocab-mismatch-tokenizer": ({"tokenizer": SP256}, G2_V2),
    "blob-not-in-toc": ({"drop_unused": True}, G2_V2),
    "unexpected-tensor": ({"drop_unused": True}, G2_V2),
    "bad-key-empty": ({"drop_unused": True}, G2_V2),
}
#: Mutations whose data is gone or ambiguous: repair must refuse (and say why).
UNREPAIRABLE = {
    "toc-missing": "scale", "vocab-mismatch-embedding": "incomplete", "missing-norm": "bytes",
    "missing-qk-norm": "bytes", "missing-linear": "bytes", "missing-att-ein-vit-model": "bytes",
    "missing-vit-tensor": "bytes", "missing-image-tensor": "bytes", "missing-half-gating": "bytes",
    "shape-mismatch-vit": "transposed", "type-unsupported-bias": "re-encod", "type-unsupported-f64": "re-encod",
    "config-missing": "--config-from", "config-undecodable": "--config-from", "tokenizer-invalid": "--tokenizer",
}
BY_NAME = {m.name: m for m in CATALOGUE}


def _mutated(name: str, tmp_path: Path) -> Path:
    if name not in BY_NAME:
        pytest.skip(f"mutation {name} no longer in the catalogue")
    d = tmp_path / "m"
    d.mkdir()
    path, _ = BY_NAME[name].apply(d)
    return path


@pytest.mark.parametrize("name", sorted(REPAIRABLE))
def test_catalogue_repairable(name, tmp_path):
    src, identical = REPAIRABLE[name]
    path = _mutated(name, tmp_path)
    out = tmp_path / "out.sbs"
    r = run(path, out)
    assert r.status == "repaired", (r.plan.to_dict(), r.problems)
    assert_clean(out)
    same, total = r.proof_counts()
    assert same == total > 0
    want = model_of(src)
    with sbs_tools.open(src) as f:
        flag = f.config is not None and f.config.needs_global_timescale
    if flag:  # repair also appends use_global_timescale (addendum §6.3)
        want["config"] = [want["config"][0] + 1] + want["config"][1:] + [1]
    assert model_of(out) == want
    if identical and not flag:
        assert sha(out) == sha(src)
    assert run(out, tmp_path / "again.sbs").status == "nothing-to-repair"  # idempotent
    # Every finding of the input was either fixed or is a tolerated warning that stays.
    assert all(i.status in ("fix", "info", "keep") for i in r.plan.items)


@pytest.mark.parametrize("name", sorted(WITH_OPTIONS))
def test_catalogue_with_options(name, tmp_path):
    opts, src = WITH_OPTIONS[name]
    path = _mutated(name, tmp_path)
    out = tmp_path / "out.sbs"
    r = run(path, out, **opts)
    assert r.status == "repaired", (r.plan.to_dict(), r.problems)
    assert_clean(out)
    assert model_of(out) == model_of(src)


@pytest.mark.parametrize("name", sorted(UNREPAIRABLE))
def test_catalogue_unrepairable(name, tmp_path):
    path = _mutated(name, tmp_path)
    r = run(path, tmp_path / "out.sbs")
    assert r.status == "unrepairable" and r.exit_code == 1
    assert any(UNREPAIRABLE[name] in x.reason for x in r.plan.blocking), [x.reason for x in r.plan.blocking]
    assert not r.plan.repairable


@pytest.mark.parametrize("mutation", CATALOGUE, ids=lambda m: m.name)
def test_catalogue_invariants(mutation, tmp_path):
    """Whatever the catalogue grows into: the input is untouched, a refusal writes nothing, a repair
    verifies clean with every kept tensor byte-identical, and repairing the result changes nothing."""
    d = tmp_path / "m"
    d.mkdir()
    path, _ = mutation.apply(d)
    out = tmp_path / "out.sbs"
    r = run(path, out)
    assert r.status in ("repaired", "nothing-to-repair", "unrepairable"), (r.status, r.problems)
    if r.status == "repaired":
        assert_clean(out)
        assert all(p.status in ("identical", "dropped", "lost") for p in r.proof)
        assert run(out, tmp_path / "again.sbs").status == "nothing-to-repair"
    elif r.status == "unrepairable":
        assert r.plan.blocking and all(x.reason for x in r.plan.blocking)
        assert r.exit_code in (1, 2)
    # Dry run says the same thing and writes nothing.
    p = repair_plan(path)
    assert p.repairable == (r.status != "unrepairable") or r.status == "nothing-to-repair"


# -- duplicates -----------------------------------------------------------------------------------------------
def _with_duplicate(tmp_path: Path, same: bool) -> Path:
    from tests.fuzz.model import pack

    with sbs_tools.open(G2_V2) as f:
        blobs = [(e.key, f.raw(e.key).tobytes()) for e in f.directory.entries]
    i = next(i for i, (k, _) in enumerate(blobs) if k == "pre_ff_ns_0")
    data = blobs[i][1] if same else bytes(reversed(blobs[i][1]))
    blobs.insert(i + 1, ("pre_ff_ns_0", data))
    path = tmp_path / "dup.sbs"
    path.write_bytes(pack(blobs, "v2"))
    return path


def test_duplicate_identical_dropped(tmp_path):
    out = tmp_path / "out.sbs"
    r = run(_with_duplicate(tmp_path, True), out)
    assert r.status == "repaired" and sha(out) == sha(G2_V2)


def test_duplicate_differing_needs_choice(tmp_path):
    path = _with_duplicate(tmp_path, False)
    r = run(path, tmp_path / "out.sbs")
    assert r.status == "unrepairable" and "--drop-duplicates" in r.plan.blocking[0].reason
    out = tmp_path / "first.sbs"
    assert run(path, out, drop_duplicates="first").status == "repaired"
    assert sha(out) == sha(G2_V2)  # the first entry holds the original bytes
    out = tmp_path / "last.sbs"
    assert run(path, out, drop_duplicates="last").status == "repaired"
    with sbs_tools.open(out) as f, sbs_tools.open(G2_V2) as g:
        assert f.raw("pre_ff_ns_0").tobytes() == bytes(reversed(g.raw("pre_ff_ns_0").tobytes()))


# -- migrate_weights output (att_ein + corrupt att_w) --------------------------------------------------------------
def test_drop_redundant_att_w_even_when_corrupt(tmp_path):
    """gemma.cpp's migrate_weights writes att_w_N next to att_ein_N, from row-padded memory (spec §9)."""
    from tests.mutations import rebuild
    from sbs_tools.toc import TocRecord

    with sbs_tools.open(G2_BF16) as f:
        lc = f.config.layer_configs[0]
        D, H, Dh = lc.model_dim, lc.heads, lc.qkv_dim
    rec = TocRecord.make("att_w_0", 2, D, H * Dh)
    src = rebuild(G2_BF16, tmp_path / "mig.sbs", add=[(rec, "att_w_0", bytes(range(256)) * (D * H * Dh * 2 // 256))])
    out = tmp_path / "out.sbs"
    r = run(src, out)
    assert r.status == "repaired" and sha(out) == sha(G2_BF16)
    act = next(a for a in r.plan.actions if a.kind == "drop-redundant")
    assert "differ" in act.summary and "einsum is what gemma.cpp uses" in act.summary


# -- options and guarantees ---------------------------------------------------------------------------------------
def test_in_place_with_backup(tmp_path):
    work = tmp_path / "model.sbs"
    shutil.copy(BROKEN / "broken-misaligned-offset.sbs", work)
    original = sha(work)
    with pytest.raises(SbsError, match="--backup"):
        repair(work, in_place=True)
    r = repair(work, in_place=True, backup=".bak")
    assert r.status == "repaired" and r.backup == str(work) + ".bak"
    assert sha(Path(r.backup)) == original
    assert_clean(work)
    shutil.copy(BROKEN / "broken-misaligned-offset.sbs", work)
    with pytest.raises(SbsError, match="already exists"):
        repair(work, in_place=True, backup=".bak")
    assert sha(work) == original


def test_output_must_differ_from_input(tmp_path):
    work = tmp_path / "model.sbs"
    shutil.copy(BROKEN / "broken-misaligned-offset.sbs", work)
    with pytest.raises(SbsError, match="is the input"):
        repair(work, work)
    with pytest.raises(SbsError, match="is the input"):
        repair(work, work, overwrite=True)
    with pytest.raises(SbsError, match="output path"):
        repair(work)


def test_dry_run_writes_nothing(tmp_path):
    out = tmp_path / "out.sbs"
    r = repair(BROKEN / "broken-misaligned-offset.sbs", out, dry_run=True)
    assert r.status == "planned" and r.plan.repairable and not out.exists()
    assert r.plan.items[0].action.kind == "relocate-blob"


def test_bad_options():
    with pytest.raises(SbsError, match="unknown target"):
        repair_plan(G2_V2, target="2023")
    with pytest.raises(SbsError, match="tokenizer"):
        repair_plan(G2_V2, tokenizer=G2_V2)  # not a SentencePiece model
    with pytest.raises(SbsError, match="first"):
        repair_plan(G2_V2, drop_duplicates="middle")


def test_output_failing_verification_is_not_renamed(tmp_path, monkeypatch):
    """If the written file does not verify, nothing is renamed into place and the temp file is removed."""
    execute = importlib.import_module("sbs_tools.repair.execute")
    real = execute.check_output
    monkeypatch.setattr(execute, "check_output", lambda plan, report: real(plan, report) + ["injected"])
    out = tmp_path / "out.sbs"
    r = run(BROKEN / "broken-misaligned-offset.sbs", out)
    assert r.status == "verification-failed" and r.exit_code == 1 and not out.exists()
    assert not list(tmp_path.glob(".sbs-*"))


def test_proof_catches_changed_bytes(tmp_path, monkeypatch):
    """The per-tensor hash comparison is real: corrupting one tensor while writing is caught."""
    execute = importlib.import_module("sbs_tools.repair.execute")
    real = execute.write_state

    def tamper(plan, a, path):
        b = next(b for b in plan.state.blobs if b.key == "linear_w_0")
        b.data = bytes(np.frombuffer(a.data(b.src), np.uint8) ^ 1)
        real(plan, a, path)

    monkeypatch.setattr(execute, "write_state", tamper)
    out = tmp_path / "out.sbs"
    r = run(BROKEN / "broken-misaligned-offset.sbs", out)
    assert r.status == "verification-failed" and not out.exists()
    bad = [p for p in r.proof if p.status == "DIFFERENT"]
    assert [p.input_key for p in bad] == ["linear_w_0"]


def test_truncated_salvage_with_reference(tmp_path):
    """With a reference file of the same architecture, the tensors before the cut are located and
    (with --partial) written out; each is byte-identical to the intact file's."""
    ref = tmp_path / "ref.sbs"  # the intact model both broken corpus files were derived from
    assert run(BROKEN / "broken-misaligned-offset.sbs", ref).status == "repaired"
    src = BROKEN / "broken-truncated.sbs"
    r = run(src, tmp_path / "out.sbs", config_from=ref)
    assert r.status == "unrepairable"
    assert "15 of 32 tensors located" in r.plan.actions[0].summary
    assert [x.code for x in r.plan.blocking] == ["toc-blob-missing"] and "17 tensors" in r.plan.blocking[0].reason
    out = tmp_path / "partial.sbs"
    r = run(src, out, config_from=ref, partial=True, tokenizer=SP256)
    assert r.status == "repaired" and r.forced and r.exit_code == 1
    assert r.proof_summary() == "15/15 tensors identical"
    with sbs_tools.open(out) as f, sbs_tools.open(ref) as g:
        assert len(f.tensors) == 15
        for name in f.tensors:
            assert f.raw(name).tobytes() == g.raw(name).tobytes()
            assert f.tensors[name].record.values() == g.tensors[name].record.values()
    assert "missing-tensor" in sbs_tools.verify_file(out).codes("error")


def test_target_2025_05_fuses_split_forms(tmp_path):
    """May-2025 readers need att_ein/qkv_ein/gating_ein: built back from att_w / qkv1+2 / gating1+2
    by permuting/concatenating the stored values (no re-encoding), so they equal the originals."""
    from tests.mutations import rebuild
    from sbs_tools.toc import TocRecord

    with sbs_tools.open(G2_BF16) as f:
        lc = f.config.layer_configs[0]
        D, H, Dh, F, K = lc.model_dim, lc.heads, lc.qkv_dim, lc.ff_hidden_dim, lc.kv_heads
        ein = np.frombuffer(f.raw("att_ein_0").tobytes(), "<u2").reshape(H, D, Dh)
        att_w = ein.transpose(1, 0, 2).reshape(D, H * Dh).tobytes()
        qkv = f.raw("qkv_ein_1").tobytes()
        gat = f.raw("gating_ein_1").tobytes()
    q1 = H * Dh * D * 2
    g1 = F * D * 2
    split = rebuild(G2_BF16, tmp_path / "split.sbs", drop=("att_ein_0", "qkv_ein_1", "gating_ein_1"), add=[
        (TocRecord.make("att_w_0", 2, D, H * Dh), "att_w_0", att_w),
        (TocRecord.make("qkv1_w_1", 2, H * Dh, D), "qkv1_w_1", qkv[:q1]),
        (TocRecord.make("qkv2_w_1", 2, 2 * K * Dh, D), "qkv2_w_1", qkv[q1:]),
        (TocRecord.make("gating1_w_1", 2, F, D), "gating1_w_1", gat[:g1]),
        (TocRecord.make("gating2_w_1", 2, F, D), "gating2_w_1", gat[g1:])])
    assert sbs_tools.verify_file(split).ok  # current gemma.cpp accepts the split forms
    out = tmp_path / "may.sbs"
    r = run(split, out, target="2025-05")
    assert r.status == "repaired", r.plan.to_dict()
    assert sorted(a.detail["key"] for a in r.plan.actions if a.kind == "fuse-tensor") == \
        ["att_ein_0", "gating_ein_1", "qkv_ein_1"]
    assert {p.status for p in r.proof} == {"identical", "derived"}
    with sbs_tools.open(out) as f, sbs_tools.open(G2_BF16) as g:
        for name in ("att_ein_0", "qkv_ein_1", "gating_ein_1"):
            assert f.raw(name).tobytes() == g.raw(name).tobytes()
            assert f.tensors[name].record.values() == g.tensors[name].record.values()
    gens = {x.key: x for x in r.report.compat}
    assert gens["2025-05-07"].loads and gens["2025-05-07"].runs


def test_config_from_must_describe_the_tensors(tmp_path):
    from tests.mutations import rebuild

    src = rebuild(G2_V2, tmp_path / "nocfg.sbs", config=None)
    r = run(src, tmp_path / "out.sbs", config_from=VIT)
    assert r.status == "unrepairable"
    assert any("does not describe these tensors" in x.reason for x in r.plan.blocking)
    out = tmp_path / "ok.sbs"
    assert run(src, out, config_from=G2_V1).status == "repaired"  # the same model, written in May 2025
    assert model_of(out) == model_of(G2_V2)


def test_auto_keeps_obsolete_model_for_its_generation(tmp_path):
    """A May-2025 PaliGemma 1 file (ViT type 2) is valid for its generation; current gemma.cpp no
    longer knows the model, so auto does not renumber it (and does not refuse)."""
    from tests.mutations import config_of, rebuild

    cfg = config_of(VIT)
    cfg.schema_revision = "2025-05"
    cfg.model, cfg.wrapping = 8, 3  # PALIGEMMA_224: obsolete since 2025-05-09
    for lc in cfg.vit_config.layer_configs:
        lc.type = 2
    src = rebuild(VIT, tmp_path / "pg1.sbs", config=cfg, layout="v1")
    r = run(src, tmp_path / "out.sbs")
    assert r.status == "nothing-to-repair", r.plan.to_dict()
    assert any("kept for the generation" in n for n in r.plan.notes)
    r = run(src, tmp_path / "out.sbs", target="current")
    assert r.status == "unrepairable"


# -- a blob without its toc record (issue #14) ---------------------------------------------------------------
def _unlisted(src: Path, tmp_path: Path, name: str, replace: dict | None = None) -> Path:
    """``src`` rewritten by the project's writer with ``name``'s toc record left out and its blob kept."""
    from .mutations import rebuild

    return rebuild(src, tmp_path / "unlisted.sbs", drop_records=(name,), replace=replace)


@pytest.mark.parametrize("src, name", [(G2_V2, "att_ein_1"), (VIT, "att_ein_1"), (VIT, "qkv_ein_w_1"),
                                       (VIT, "c_final_norm")],
                         ids=["gemma2-att_ein_1", "vit-att_ein_1", "vit-qkv_ein_w_1", "vit-c_final_norm"])
def test_blob_without_toc_record_is_restored(src, name, tmp_path):
    """Every byte is there, only the record is gone: verify says `sbs repair` restores it, and repair does --
    the output verifies clean and every tensor and toc record is the original's, byte for byte."""
    bad = _unlisted(src, tmp_path, name)
    rep = sbs_tools.verify_file(bad)
    missing = [f for f in rep.errors if f.code == "missing-tensor" and f.tensor == name]
    assert missing and all("`sbs repair` restores" in f.hint for f in missing), [f.to_dict() for f in rep.errors]
    assert "re-export" not in " ".join(f.hint for f in missing)
    out = tmp_path / "fixed.sbs"
    r = run(bad, out)
    assert r.status == "repaired" and r.exit_code == 0, [(i.finding.code, i.status, i.reason) for i in r.plan.items]
    assert not r.plan.refusals
    items = {(i.finding.code, i.finding.tensor or i.finding.blob): i for i in r.plan.items}
    assert items[("missing-tensor", name)].status == "fix"
    assert items[("missing-tensor", name)].action.kind == "rebuild-toc"
    rep = sbs_tools.verify_file(out)
    assert rep.ok and not [f for f in rep.warnings if f.code != "vit-pool-grid"], [f.to_dict() for f in rep.findings]
    assert model_of(out)["tensors"] == model_of(src)["tensors"]
    same, total = r.proof_counts()
    assert same == total == len(model_of(src)["tensors"])


def test_blob_without_toc_record_cli(tmp_path):
    """The same through the CLI, with the input hashed before and after."""
    import subprocess
    import sys

    bad = _unlisted(G2_V2, tmp_path, "att_ein_1")
    before = sha(bad)
    out = tmp_path / "fixed.sbs"
    p = subprocess.run([sys.executable, "-m", "sbs_tools", "repair", str(bad), "-o", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert sha(bad) == before
    assert "restore the toc record of att_ein_1" in p.stdout and "18/18 tensors identical" in p.stdout
    assert "verify: clean" in p.stdout and "cannot fix" not in p.stdout


def _sfp_query_norm(name: str) -> dict:
    """``name`` (a 1 x 32 norm of the ViT fixture) stored as SFP: 32 bytes, which NUQ's 32 values also take."""
    from sbs_tools.toc import TocRecord
    from sbs_tools.types import Type

    return {name: (TocRecord.make(name, Type.SFP, 1, 32, 1.0), bytes(range(0x10, 0x30)))}


@pytest.mark.parametrize("src, name, replace, why", [
    (VIT, "query_norm_1", _sfp_query_norm("query_norm_1"), "several element types (SFP, NUQ)"),
    (G2_V2, "linear_w_0", None, "the scale is lost"),
], ids=["type-ambiguous", "scale-lost"])
def test_blob_without_toc_record_not_derivable(src, name, replace, why, tmp_path):
    """When the blob size fits two types, or the SFP bytes reach 1.875 (the scale is lost), the record cannot be
    rebuilt: the tensor stays missing, the reason says why, nothing is written."""
    bad = _unlisted(src, tmp_path, name, replace)
    out = tmp_path / "fixed.sbs"
    r = run(bad, out)
    assert r.status == "unrepairable" and r.exit_code == 1
    item = next(i for i in r.plan.items if i.finding.code == "missing-tensor" and i.finding.tensor == name)
    assert item.status == "cannot-fix"
    assert "cannot be rebuilt unambiguously" in item.reason and why in item.reason, item.reason


def test_skeleton_is_the_written_layout(tmp_path):
    """The simulated output has exactly the directory and size of the file execute writes."""
    import os

    from sbs_tools import blobstore
    from sbs_tools.repair.simulate import skeleton, write_skeleton

    for layout in ("v1", "v2"):
        out = tmp_path / f"{layout}.sbs"
        r = run(BROKEN / "broken-misaligned-offset.sbs", out, layout=layout)
        assert r.status == "repaired"
        from sbs_tools.repair.context import Ctx

        p = Ctx(None, r.plan.options, None, r.plan, set(), s=r.plan.state)
        p.a = importlib.import_module("sbs_tools.repair.analyze").analyze(BROKEN / "broken-misaligned-offset.sbs")
        sk = tmp_path / f"{layout}.skeleton"
        write_skeleton(str(sk), r.plan.state.layout, r.plan.state.pad_end, skeleton(p))
        assert os.path.getsize(sk) == os.path.getsize(out)
        d_sk = blobstore.read_directory(np.fromfile(sk, np.uint8))
        d_out = blobstore.read_directory(np.fromfile(out, np.uint8))
        assert [(e.key, e.offset, e.size) for e in d_sk.entries] == [(e.key, e.offset, e.size) for e in d_out.entries]
        assert d_sk.header == d_out.header
