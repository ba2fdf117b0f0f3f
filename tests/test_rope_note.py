"""Gemma 3 270M files: inspect and verify mention gemma.cpp's RoPE-base quirk (spec §8, §12)."""
from __future__ import annotations

import copy
import json

import sbs_tools
from sbs_tools.cli import main
from sbs_tools.writer import write_model

from .conftest import CORPUS

SRC = CORPUS / "v2" / "gemma3-1b-tiny-sfp.sbs"


def _as_270m(tmp_path, model: int = 18):
    with sbs_tools.open(SRC) as f:
        cfg = copy.deepcopy(f.config)
        cfg.model = model
        out = tmp_path / "m.sbs"
        write_model(out, cfg, [(r, f.raw(r.name)) for r in f.toc], f.tokenizer_bytes)
    return out


def test_270m_gets_the_note(tmp_path, capsys):
    path = _as_270m(tmp_path)
    rep = sbs_tools.verify_file(path)
    assert rep.ok
    notes = [x for x in rep.findings if x.code == "rope-quirk"]
    assert len(notes) == 1 and notes[0].severity == "info" and "10,000" in notes[0].message
    assert "layer(s) 5 " in notes[0].message  # the tiny model's one global layer
    assert main(["inspect", str(path)]) == 0
    assert "10,000" in capsys.readouterr().out
    assert main(["inspect", "--json", str(path)]) == 0
    assert any("10,000" in n for n in json.loads(capsys.readouterr().out)["summary"]["notes"])


def test_other_models_do_not(tmp_path, capsys):
    path = _as_270m(tmp_path, model=15)  # Gemma 3 1B: gemma.cpp uses 1e6 on global layers itself
    assert "rope-quirk" not in sbs_tools.verify_file(path).codes()
    assert main(["inspect", str(path)]) == 0
    assert "10,000" not in capsys.readouterr().out
