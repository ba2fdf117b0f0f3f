"""IFields decoding follows gemma.cpp's ReadVisitor, including its compatibility rules."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sbs_tools import FieldsError
from sbs_tools.config import CURRENT, SCHEMAS, ModelConfig, decode_config
from sbs_tools.fields import NFIELDS, Field, Schema, as_words, read_struct, write_struct
from sbs_tools.toc import MATPTR, TocRecord, decode_toc, encode_toc
from sbs_tools.types import Type

W = lambda *xs: np.array(xs, dtype="<u4")  # noqa: E731
F1 = 0x3F800000


def test_spec_matptr_vectors():
    """Appendix A: I8 att_ein_0 and NUQ qkv_ein_3 records, word for word."""
    i8 = TocRecord.make("att_ein_0", Type.I8, 4608, 256)
    assert write_struct(MATPTR, i8.values()) == [0xB, 3, 0x5F747461, 0x5F6E6965, 0x30, 8, 1, 0x129000, 0x1200,
                                                 0x100, F1, 0x100]
    nuq = TocRecord.make("qkv_ein_3", Type.NUQ, 1536, 1152, 1.5)
    assert write_struct(MATPTR, nuq.values()) == [0xB, 3, 0x5F766B71, 0x5F6E6965, 0x33, 4, 1, 0xF3000, 0x600,
                                                  0x480, 0x3FC00000, 0x480]
    emb = TocRecord.make("c_embedding", Type.BF16, 262144, 1152)
    assert write_struct(MATPTR, emb.values()) == [0x0B, 0x03, 0x6D655F63, 0x64646562, 0x00676E69, 2, 2,
                                                  0x12000000, 0x40000, 0x480, F1, 0x480]
    back = decode_toc(np.asarray(write_struct(MATPTR, i8.values()) + write_struct(MATPTR, nuq.values()),
                                 dtype="<u4"))
    assert [r.values() for r in back] == [i8.values(), nuq.values()]
    assert back[1].word_pos == 12


SMALL = Schema("S", (Field("a", "u32", 7), Field("b", "string", "x"), Field("c", "vector", [],
                                                                            elem=Field("e", "u32"))))


def test_older_data_keeps_defaults():
    r = read_struct(SMALL, W(1, 5))
    assert r.values == {"a": 5, "b": "x", "c": [], NFIELDS: 1}  # one field stored
    assert r.missing_fields == 2 and r.extra_u32 == 0
    assert write_struct(SMALL, r.values) == [1, 5]  # written back as stored


def test_newer_data_extra_words_skipped():
    words = W(6, 1, 1, 0x6968, 0, 0xAAAA, 0xBBBB)  # a=1, b="hi", c=[], then 2 unknown words
    r = read_struct(SMALL, words)
    assert r.values == {"a": 1, "b": "hi", "c": []}
    assert r.extra_u32 == 2 and r.pos == 7  # skipped by the length prefix
    assert r.extra_at == [("", 2)]


def test_nested_extra_fields_never_shift_what_follows():
    """Addendum §4.4: a newer writer's extra fields inside a nested object are skipped by the object's own
    length prefix (gemma.cpp <= 3ed403e reads them as the parent's next fields and crashes)."""
    inner = Schema("I", (Field("x", "u32"),))
    outer = Schema("O", (Field("v", "vector", [], elem=Field("i", "struct", schema=inner)), Field("z", "u32")))
    words = W(8, 2, 2, 10, 0xEE, 2, 11, 0xEE, 42)  # two elements written with one extra field each, then z
    r = read_struct(outer, words)
    assert r.values["v"] == [{"x": 10}, {"x": 11}] and r.values["z"] == 42
    assert r.extra_at == [("v[0]", 1), ("v[1]", 1)]


def test_toc_skips_extra_words_between_records():
    rec = write_struct(MATPTR, TocRecord.make("x", Type.F32, 2, 3).values())
    rec[0] += 2
    words = rec + [9, 9] + write_struct(MATPTR, TocRecord.make("y", Type.BF16, 1, 1).values())
    recs = decode_toc(np.asarray(words, dtype="<u4"))
    assert [r.name for r in recs] == ["x", "y"] and recs[0].extra_u32 == 2


@pytest.mark.parametrize("words, code, offset", [
    ((5, 1), "fields-structure", 0),                    # length prefix past the span
    ((2, 1, 65), "fields-value", 8),                     # string of 65 words
    ((3, 1, 2, 0x41), "fields-structure", 8),           # string runs past its record
    ((3, 1, 1, 0), "fields-value", 12),                  # all-zero string word
    ((3, 1, 0, 8388609), "fields-value", 12),            # vector longer than 8 Mi (3dd2961a's limit)
    ((3, 1, 0, 65537), "fields-structure", 12),          # more elements than words left
])
def test_invalid_data(words, code, offset):
    with pytest.raises(FieldsError) as e:
        read_struct(SMALL, W(*words))
    assert e.value.code == code and e.value.offset == offset


def test_invalid_float_bool_enum():
    base = ModelConfig(model=7, weight=3, num_layers=0)
    words = base.to_words()
    # words: m, family, "" (1 word), model, wrapping, weight, layers, dim, vocab, seq, scales, att_cap(11)
    for idx, value, what in [(11, 0x7FC00000, "float"), (13, 2, "bool")]:
        bad = list(words)
        bad[idx] = value
        with pytest.raises(FieldsError) as e:
            decode_config(np.asarray(bad, dtype="<u4"))
        assert e.value.code == "config-invalid", what
        assert e.value.offset == 4 * idx


def test_blob_size_not_multiple_of_four():
    with pytest.raises(FieldsError) as e:
        as_words(b"\x01\x00\x00", "config")
    assert e.value.code == "fields-structure"


def test_vit_type_2_decodes_with_may_2025_schema():
    cfg = ModelConfig(model=14, weight=3, num_layers=0)
    from sbs_tools.config import LayerConfig
    cfg.vit_config.layer_configs = [LayerConfig(model_dim=8, type=2)]
    cfg.schema_revision = "2025-05"
    back = decode_config(np.asarray(cfg.to_words(), dtype="<u4"))
    assert back.schema_revision == "2025-05"
    assert back.layer_type_name(back.vit_config.layer_configs[0].type) == "kVit"
    # Read in today's numbering, 2 is kDeepSeekMLA (gemma.cpp since 2026 parses it, then aborts loading).
    cur = decode_config(np.asarray(cfg.to_words(), dtype="<u4"), revision=CURRENT)
    assert cur.layer_type_name(cur.vit_config.layer_configs[0].type) == "kDeepSeekMLA"


def test_utf8_strings_and_newer_enum_values():
    """Since 4b26b039 strings may be UTF-8; a Model value newer than this release stays a number."""
    cfg = ModelConfig(display_name="Gemma 3 — ünïcode", model=57, weight=3, num_layers=0)
    back = decode_config(np.asarray(cfg.to_words(), dtype="<u4"))
    assert back.display_name == "Gemma 3 — ünïcode" and back.non_ascii == ["display_name"]
    assert back.model == 57 and back.to_dict()["model"] == 57
    assert back.newer_values == [("model", "Model", 57)]
    # A value below the sentinel that gemma.cpp rejects stays invalid (PostQKType is {0, 1, 8}).
    from sbs_tools.config import LayerConfig
    from sbs_tools.verify.metadata import config_field_offsets
    good = ModelConfig(model=15, weight=3, num_layers=1, layer_configs=[LayerConfig(post_qk=1)])
    words = good.to_words()
    at = config_field_offsets(good, 0, len(words))["layer_configs[0].post_qk"] // 4
    assert words[at] == 1
    words[at] = 5
    with pytest.raises(FieldsError) as e:
        decode_config(np.asarray(words, dtype="<u4"))
    assert e.value.code == "config-invalid" and e.value.offset == 4 * at


def test_spec_gemma3_1b_config_prefix():
    """§3.1's verified example starts [504, 1, 3, 'Gemm', 'a3_1', 'B', 15, 2, 3, 26, 1152, ...]."""
    cfg = ModelConfig(display_name="Gemma3_1B", model=15, wrapping=2, weight=3, num_layers=26, model_dim=1152,
                      vocab_size=262144, max_seq_len=32768)
    words = cfg.to_words()
    assert words[1:13] == [1, 3, 0x6D6D6547, 0x315F3361, 0x42, 15, 2, 3, 26, 1152, 262144, 32768]


names = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.builds(lambda n, t, r, c, s: TocRecord.make(n, t, r, c, s), names.filter(bool),
                 st.sampled_from([Type.F32, Type.BF16, Type.SFP, Type.NUQ, Type.I8]),
                 st.integers(0, 1 << 16), st.integers(0, 1 << 14),
                 st.floats(allow_nan=False, allow_infinity=False, width=32)))
def test_matptr_roundtrip(rec):
    back = decode_toc(np.frombuffer(encode_toc([rec]), dtype="<u4"))
    assert [b.values() for b in back] == [rec.values()]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), max_size=64))
def test_arbitrary_words_never_crash(words):
    for schema in (SCHEMAS[CURRENT], MATPTR):
        try:
            read_struct(schema, np.asarray(words, dtype="<u4"))
        except FieldsError:
            pass
