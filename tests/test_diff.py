"""sbs diff: config/toc/blob differences and decoded value differences with tolerances."""
from __future__ import annotations

import json

import numpy as np
import pytest

import sbs_tools
from sbs_tools.cli import main
from sbs_tools.diff import diff
from sbs_tools.toc import TocRecord
from sbs_tools.writer import write_model

from .conftest import CORPUS

A = CORPUS / "v2/gemma2-2b-tiny-sfp.sbs"


def _tensors(path):
    with sbs_tools.open(path) as f:
        return f.config, f.tokenizer_bytes, [(TocRecord.make(n, i.type, i.rows, i.cols, i.scale),
                                              f.raw(n).tobytes()) for n, i in f.tensors.items()]


def test_identical_and_relayout(tmp_path):
    rep = diff(A, A)
    assert rep.identical and rep.equivalent and rep.unchanged == 18
    cfg, tok, tensors = _tensors(A)
    write_model(tmp_path / "v1.sbs", cfg, tensors, tok, layout="v1")
    rep = diff(A, tmp_path / "v1.sbs")
    assert not rep.identical and rep.equivalent
    assert rep.container == ["layout: v2 != v1"] or "layout: v2 != v1" in rep.container
    assert rep.unchanged == 18 and rep.tensors == []
    write_model(tmp_path / "rev.sbs", cfg, list(reversed(tensors)), tok)
    assert diff(A, tmp_path / "rev.sbs").container == ["same blobs in a different order"]


def test_type_change_values_and_tolerance():
    b = CORPUS / "v2/gemma2-2b-tiny-bf16.sbs"
    rep = diff(A, b)
    assert rep.config == ["weight: 3 != 2"]
    changed = {t.name: t for t in rep.tensors}
    assert set(changed) == {f"{n}_{i}" for n in ("att_ein", "qkv_ein", "gating_ein", "linear_w") for i in (0, 1)}
    t = changed["att_ein_0"]
    assert t.changes == ["type SFP -> BF16"] and t.verdict == "different" and t.values == 128 * 128
    with sbs_tools.open(A) as fa, sbs_tools.open(b) as fb:
        d = np.abs(fa.tensor("att_ein_0").astype(np.float64) - fb.tensor("att_ein_0"))
    assert t.max_abs == pytest.approx(d.max())
    loose = diff(A, b, atol=0.05, rtol=0.2)
    assert all(td.verdict == "close" for td in loose.tensors)
    assert not loose.equivalent  # configs still differ (weight type)


def test_value_change_scale_change_added_removed(tmp_path):
    cfg, tok, tensors = _tensors(CORPUS / "v2/gemma2-2b-tiny-f32.sbs")
    write_model(tmp_path / "a.sbs", cfg, tensors, tok)
    out = []
    for rec, data in tensors:
        if rec.name == "linear_w_1":
            x = np.frombuffer(data, np.float32).copy()
            x[7] += 0.5
            data = x.tobytes()
        if rec.name == "pre_ff_ns_0":
            rec = TocRecord.make(rec.name, rec.type, rec.rows, rec.cols, 2.0)
        if rec.name == "post_ff_ns_1":
            continue
        out.append((rec, data))
    out.append((TocRecord.make("extra_w", 1, 1, 2), np.zeros(2, np.float32).tobytes()))
    write_model(tmp_path / "b.sbs", cfg, out, tok)
    rep = diff(tmp_path / "a.sbs", tmp_path / "b.sbs", atol=1e-3)
    assert rep.removed == ["post_ff_ns_1"] and rep.added == ["extra_w"]
    by = {t.name: t for t in rep.tensors}
    lw = by["linear_w_1"]
    assert lw.verdict == "different" and lw.mismatched == 1 and lw.max_abs == pytest.approx(0.5)
    assert by["pre_ff_ns_0"].changes == ["scale 1 -> 2"]
    assert not rep.equivalent
    rep = diff(tmp_path / "a.sbs", tmp_path / "b.sbs", atol=1.0)
    assert {t.name: t.verdict for t in rep.tensors}["linear_w_1"] == "close"
    rep = diff(tmp_path / "a.sbs", tmp_path / "b.sbs", values=False)
    assert {t.name: t.verdict for t in rep.tensors}["linear_w_1"] == "different"
    # tokenizer and shape changes
    out2 = [(TocRecord.make(r.name, r.type, r.cols, r.rows, r.scale) if r.name == "att_ein_0" else r, d)
            for r, d in tensors]
    write_model(tmp_path / "c.sbs", cfg, out2, b"unavailable")
    rep = diff(tmp_path / "a.sbs", tmp_path / "c.sbs")
    assert {t.name: t.verdict for t in rep.tensors} == {"att_ein_0": "incomparable"}
    assert any(b.startswith("tokenizer") for b in rep.blobs)


def test_nan_handling(tmp_path):
    cfg, tok, tensors = _tensors(CORPUS / "v2/gemma2-2b-tiny-f32.sbs")
    nan = []
    for rec, data in tensors:
        if rec.name == "c_final_norm":
            x = np.frombuffer(data, np.float32).copy()
            x[0] = np.nan
            data = x.tobytes()
        nan.append((rec, data))
    write_model(tmp_path / "n.sbs", cfg, nan, tok)
    rep = diff(tmp_path / "n.sbs", tmp_path / "n.sbs")
    assert rep.identical  # same bytes: NaN == NaN here
    write_model(tmp_path / "a.sbs", cfg, tensors, tok)
    rep = diff(tmp_path / "a.sbs", tmp_path / "n.sbs", atol=10)
    t = rep.tensors[0]
    assert t.name == "c_final_norm" and t.verdict == "different" and t.nonfinite == 1
    json.dumps(rep.to_dict())  # inf/nan rendered as strings


def test_cli(capsys, tmp_path):
    assert main(["diff", str(A), str(A)]) == 0
    assert "identical" in capsys.readouterr().out
    b = CORPUS / "v2/gemma2-2b-tiny-bf16.sbs"
    assert main(["diff", str(A), str(b), "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["config"] == ["weight: 3 != 2"] and len(d["tensors_changed"]) == 8 and d["tensors_unchanged"] == 10
    assert main(["diff", str(A), str(b), "--atol", "0.05", "--rtol", "0.2"]) == 1
    out = capsys.readouterr().out
    assert "close" in out and "weight" in out
    assert main(["diff", str(A), str(tmp_path / "missing.sbs")]) == 2
