"""Older generations of files (spec §0): pre-2025, prefixed single-file, May-2025 ViT type 2."""
from __future__ import annotations

import json

import numpy as np

import sbs_tools
from sbs_tools import codecs
from sbs_tools.repair import repair
from sbs_tools.types import Type
from sbs_tools.writer import write_blobstore

from .conftest import CORPUS, LEGACY

REF = CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs"


def test_pre2025_multi_file():
    with sbs_tools.open(LEGACY / "e0-gemma2-tiny-sfp.sbs") as f, sbs_tools.open(REF) as ref:
        assert (f.layout, f.format, f.era) == ("v1", "pre-2025", "pre-2025")
        assert f.config is None and f.toc == [] and f.tokenizer_bytes is None
        assert f.file_bytes % 256 == 0 and f.file_bytes % 65536 != 0  # no end padding before 2025-05
        assert set(f.tensors) == set(ref.tensors)
        for name, t in f.tensors.items():
            r = ref.tensors[name]
            assert t.key[1:] == name and t.type == r.type
            assert t.scale == r.scale  # Fscales assigned in gemma.cpp's order
            assert t.num_values == r.num_values
            assert np.array_equal(f.raw(name), ref.raw(name))
        assert not [p for p in f.problems if p.severity == "error"]


def test_prefixed_single_file():
    with sbs_tools.open(LEGACY / "e1-gemma2-tiny-sfp.sbs") as f, sbs_tools.open(REF) as ref:
        assert (f.format, f.era) == ("single-file", "single-file-prefixed")
        assert f.config.specifier == ref.config.specifier
        assert set(f.tensors) == set(ref.tensors)
        assert f.tensors["att_ein_0"].key == "$att_ein_0"
        assert f.tokenizer_bytes == ref.tokenizer_bytes


def test_may_2025_vit_type_2():
    with sbs_tools.open(LEGACY / "e2-gemma3-vit-type2-sfp.sbs") as f:
        assert (f.layout, f.era) == ("v1", "single-file-v1")
        cfg = f.config
        assert cfg.schema_revision == "2025-05"
        assert [lc.type for lc in cfg.vit_config.layer_configs] == [2, 2]
        assert {cfg.layer_type_name(lc.type) for lc in cfg.vit_config.layer_configs} == {"kVit"}
        assert cfg.to_dict()["vit_config"]["layer_configs"][0]["type"] == "kVit"


def test_v1_and_v2_hold_the_same_model():
    with sbs_tools.open(LEGACY / "v1-gemma3-vit-sfp.sbs") as a, \
            sbs_tools.open(CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs") as b:
        assert a.layout == "v1" and b.layout == "v2"
        assert a.config == b.config
        assert [e.key for e in a.directory.entries] == [e.key for e in b.directory.entries]
        assert all(np.array_equal(a.raw(k), b.raw(k)) for k in a.blobs)


def _e0_with_q4_0(path, ref=REF) -> dict[str, np.ndarray]:
    """``ref`` as a pre-2025 file whose scaled matrices are Q4_0 under the key prefix '4' (addendum §2.1);
    returns the values each Q4_0 tensor holds."""
    blobs, q4 = [], {}
    with sbs_tools.open(ref) as f:
        for r in f.toc:
            if r.name.rsplit("_", 1)[0] in ("att_ein", "qkv_ein", "gating_ein", "linear_w"):
                raw = codecs.encode("Q4_0", f.tensor(r.name).reshape(-1))  # the scale folded into the values
                q4[r.name] = codecs.decode("Q4_0", raw, r.rows * r.cols)
                blobs.append(("4" + r.name, raw))
            else:
                assert r.scale == 1.0
                blobs.append(({Type.F32: "F", Type.BF16: "B", Type.SFP: "$"}[r.type] + r.name, f.raw(r.name)))
    write_blobstore(path, blobs, layout="v1", pad_end=False)
    return q4


def test_pre2025_q4_0_prefix(tmp_path):
    p = tmp_path / "e0-q4.sbs"
    q4 = _e0_with_q4_0(p)
    with sbs_tools.open(p) as f:
        assert f.era == "pre-2025"
        for name, values in q4.items():
            t = f.tensors[name]
            assert t.type == Type.Q4_0 and t.key == "4" + name and t.num_values == values.size
            assert np.array_equal(f.tensor(name).reshape(-1), values)
    r = sbs_tools.verify_file(p)
    assert not r.by_code("unexpected-tensor") and not r.by_code("unknown-tensor")
    gens = {g.key: g for g in r.compat}
    for g in ("pre-2025", "2025-10-15", "2025-10-24"):  # only 2026 readers know the prefix
        assert any("prefix '4'" in w for w in gens[g].reasons), g
    assert not any("prefix '4'" in w for g in ("2026-07-10", "2026-08-27") for w in gens[g].reasons)
    # migrated with the architecture of the file it came from: Q4_0 tensors and weight, values kept
    out = tmp_path / "out.sbs"
    rep = repair(p, out, target="current", config_from=REF)
    assert rep.status == "repaired", [x.reason for x in rep.plan.refusals]
    with sbs_tools.open(out) as f:
        assert f.config.weight == Type.Q4_0
        for name, values in q4.items():
            assert f.tensors[name].type == Type.Q4_0
            assert np.array_equal(f.tensor(name).reshape(-1), values)


def test_inspect_names_the_deduced_model(tmp_path, capsys):
    """A file without a config: inspect says what current gemma.cpp deduces (the same function verify uses)."""
    from sbs_tools.cli import main
    from sbs_tools.deduce import GENERATION_RULES, for_generation

    path = LEGACY / "e0-gemma2-tiny-sfp.sbs"
    with sbs_tools.open(path) as f:
        want = for_generation(list(GENERATION_RULES)[-1], [(e.key, e.size) for e in f.directory.entries])[-1]
    assert main(["inspect", "--json", str(path)]) == 0
    d = json.loads(capsys.readouterr().out)["summary"]["deduced"]
    assert d["model"] == (want.name if want.model else "UNKNOWN") and d["basis"] == want.basis
    assert d["weight"] == "SFP" and d["generation"] == "2026-08-27"
    main(["inspect", str(path)])
    assert "no config: gemma.cpp 2026-08-27" in capsys.readouterr().out
