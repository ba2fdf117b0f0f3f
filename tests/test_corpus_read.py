"""Every gemma.cpp-written corpus file reads exactly as gemma.cpp itself read it."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

import sbs_tools
from sbs_tools.config import LayerConfig

from .conftest import BROKEN_CORPUS, CORPUS, reference


def test_blob_table_matches_gemma_cpp(corpus_file):
    ref = reference(corpus_file)
    with sbs_tools.open(corpus_file) as f:
        got = [(e.key, e.offset, e.size) for e in f.directory.entries]
        assert got == [(b["key"], b["offset"], b["bytes"]) for b in ref["inspect"]["blobs"]]
        assert f.file_bytes == ref["size"]
        assert f.layout == ref["layout"].lower()
        assert f.format == "single-file"
        assert f.era == f"single-file-{f.layout}"
        hdr = ref["footer_header"] if f.layout == "v2" else ref["front_header"]
        assert f.directory.header.num_blobs == hdr["num_blobs"]
        assert f.directory.header.file_bytes == hdr["file_bytes"]
        assert not [p for p in f.problems if p.severity == "error"]


def _layer_matches(ours: LayerConfig, ref: dict, type_name: str) -> None:
    for k, v in ref.items():
        if k.endswith("_name"):
            continue
        assert getattr(ours, k) == v, k


def test_config_matches_gemma_cpp(corpus_file):
    ref = reference(corpus_file)["inspect"]
    rc = ref["config"]
    with sbs_tools.open(corpus_file) as f:
        cfg = f.config
        assert cfg.schema_revision == "2025-10"
        assert cfg.specifier == rc["Specifier"]
        renamed = {"seq_len": "max_seq_len"}  # e9ecb77's name for the field (v1 corpus JSON)
        for key, value in rc.items():
            key = renamed.get(key, key)
            if key in ("Specifier", "model_prefix", "IsGlobalLayer", "layer_configs", "vit_config") \
                    or key.endswith("_name"):
                continue
            assert getattr(cfg, key) == value, key
        assert cfg.weight_name == rc["weight_name"]
        assert cfg.wrapping_name == rc["wrapping_name"]
        if "IsGlobalLayer" in rc:  # not recorded by the e9ecb77 build
            assert [cfg.is_global_layer(i) for i in range(cfg.num_layers)] == rc["IsGlobalLayer"]
        assert len(cfg.layer_configs) == len(rc["layer_configs"])
        for ours, theirs in zip(cfg.layer_configs, rc["layer_configs"]):
            _layer_matches(ours, theirs, "kGemma")
            assert cfg.layer_type_name(ours.type) == theirs["type_name"]
        vit = rc["vit_config"]
        for key, value in vit.items():
            if key != "layer_configs":
                assert getattr(cfg.vit_config, key) == value, key
        for ours, theirs in zip(cfg.vit_config.layer_configs, vit["layer_configs"], strict=True):
            _layer_matches(ours, theirs, "kVit")
            assert cfg.layer_type_name(ours.type) == theirs["type_name"]
        # The blob re-serializes to the same words gemma.cpp stored.
        assert cfg.to_words() == ref["config_blob_u32"]
        assert cfg.to_bytes() == f.raw("config").tobytes()


def test_toc_matches_gemma_cpp(corpus_file):
    ref = reference(corpus_file)["inspect"]
    with sbs_tools.open(corpus_file) as f:
        assert len(f.toc) == len(ref["toc"])
        for rec, want in zip(f.toc, ref["toc"]):
            assert rec.word_pos == want["toc_u32_pos"]
            assert (rec.name, rec.type, rec.element_bytes, rec.rows, rec.cols, rec.scale, rec.stride) == (
                want["name"], want["type_enum"], want["element_bytes"], want["rows"], want["cols"],
                want["scale"], want["stride"])
            t = f.tensors[rec.name]
            assert (t.bytes, t.offset) == (want["blob_bytes"], want["blob_offset"])
            assert t.expected_bytes == want["packed_bytes"]
            assert t.type_name.lower() == want["type"]


def test_tokenizer_blob(corpus_file):
    ref = reference(corpus_file)
    with sbs_tools.open(corpus_file) as f:
        tok = f.tokenizer_bytes
        assert len(tok) == ref["inspect"]["tokenizer_blob_bytes"]
        assert hashlib.sha256(tok).hexdigest() == ref["tokenizer_sha256"]
        model = (CORPUS / ref["tokenizer_model"]).read_bytes()
        assert tok == model


def test_tensor_views_are_zero_copy(corpus_file):
    with sbs_tools.open(corpus_file) as f:
        name = next(iter(f.tensors))
        raw = f.tensor(name, decode=False)
        assert raw.dtype == np.uint8 and not raw.flags.owndata and not raw.flags.writeable
        assert raw.size == f.tensors[name].bytes
        assert np.shares_memory(raw, f.buf)


def test_open_reads_only_metadata(corpus_file, monkeypatch):
    """Opening must not decode tensors: the codecs are never imported or called."""
    import sbs_tools.sbsfile as sf

    calls = []
    monkeypatch.setattr(sf.SbsFile, "tensor", lambda *a, **k: calls.append(a))
    with sbs_tools.open(corpus_file) as f:
        assert f.tensors
    assert not calls


@pytest.mark.parametrize("path", BROKEN_CORPUS, ids=lambda p: p.stem)
def test_broken_corpus(path):
    ref = reference(path)
    name = path.stem
    if name == "broken-truncated":
        with pytest.raises(sbs_tools.ContainerError) as e:
            sbs_tools.open(path)
        assert e.value.code == "bad-magic"
        assert e.value.offset == ref["size"] - 16
    elif name == "broken-misaligned-offset":
        with sbs_tools.open(path) as f:
            codes = [(p.code, p.blob) for p in f.problems if p.severity == "error"]
            assert codes == [("blob-misaligned", "c_final_norm")]
    else:  # gemma.cpp's container reader and model store accept it
        with sbs_tools.open(path) as f:
            assert "att_ein_1" not in f.tensors and "att_ein_0" in f.tensors
            assert not [p for p in f.problems if p.severity == "error"]


def test_context_manager_closes_mapping(corpus_file):
    f = sbs_tools.open(corpus_file)
    with f:
        pass
    assert f._mm is None
    # Closing while a view is alive is safe: the view keeps working.
    g = sbs_tools.open(corpus_file)
    view = g.raw("config")
    g.close()
    assert view.size > 0 and int(view[0]) >= 0
