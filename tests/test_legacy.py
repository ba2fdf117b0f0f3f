"""Older generations of files (spec §0): pre-2025, prefixed single-file, May-2025 ViT type 2."""
from __future__ import annotations

import numpy as np

import sbs_tools

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
