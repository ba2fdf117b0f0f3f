"""Mutations of valid files: every entry point keeps the contract, and ``verify`` notices damage.

Bases are random valid models (every family, type, layout, era) and the gemma.cpp-written and
legacy fixtures. Mutations are stacked (1-3) from ``strategies.OPS``. The contract (returns or
raises SbsError, bounded time) is checked on every call; peak allocation (tracemalloc, which
slows calls several-fold) in the ``*_memory`` properties and on fixtures.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import pytest
import sbs_tools
from hypothesis import given, note, strategies as st

from . import harness as H, oracle, strategies as S
from ..conftest import CORPUS
from .profiles import fuzz_settings

H.warm_up()

LIB = dict(cli_too=False, repair=False)


def _check(mut: S.Mutated, **kw) -> H.Exercise:
    note("\n".join(mut.ops))
    return H.exercise(H.scratch_file(mut.data), **kw)


@fuzz_settings(fast=200, weight=2.0)
@given(data=st.data())
def test_mutated_generated_files(data):
    """open, accessors, tensor(), dump, summarize, verify(deep=True), inference.load."""
    base = data.draw(S.generated_bases(), label="base")
    _check(data.draw(S.mutations(base), label="mutation"), measure_memory=False, **LIB)


@fuzz_settings(fast=50, weight=1.0)
@given(data=st.data())
def test_mutated_generated_files_memory(data):
    """As above, with every call's peak allocation measured against the file size."""
    base = data.draw(S.generated_bases(), label="base")
    _check(data.draw(S.mutations(base), label="mutation"), measure_memory=True, **LIB)


@fuzz_settings(fast=20, weight=0.4)
@given(data=st.data())
def test_mutated_fixtures(data):
    """gemma.cpp-written and legacy fixtures (up to 1 MiB), memory measured."""
    base = data.draw(S.fixture_bases(max_bytes=1 << 20), label="base")
    _check(data.draw(S.mutations(base), label="mutation"), tensors=16, measure_memory=True, **LIB)


@fuzz_settings(fast=15, weight=0.3)
@given(data=st.data())
def test_mutated_files_cli(data):
    """The CLI on damaged files: ``sbs inspect --json``, ``sbs dump --json``, ``sbs repair --dry-run``
    exit 0/1/2 with no traceback, and a dry run writes nothing."""
    if data.draw(st.integers(0, 4), label="arbitrary bytes?") == 0:
        mut = S.Mutated(data.draw(st.binary(max_size=4096), label="bytes"), ["arbitrary bytes"])
    else:
        base = data.draw(S.generated_bases(), label="base")
        mut = data.draw(S.mutations(base), label="mutation")
    note("\n".join(mut.ops))
    path = H.scratch_file(mut.data)
    before = sorted(p.name for p in path.parent.iterdir())
    for argv in (["inspect", "--json"], ["dump", "--json"], ["inspect"], ["dump"], ["dump", "--markdown"],
                 ["verify", "--deep"], ["repair", "--dry-run"], ["repair", "--dry-run", "--json"]):
        if argv[0] == "repair" and not H.repair_available():
            continue
        H.bounded("sbs " + " ".join(argv), lambda argv=argv: H.cli([*argv, str(path)]), size=len(mut.data),
                  time_factor=4.0, measure_memory=False)
    assert sorted(p.name for p in path.parent.iterdir()) == before, "repair --dry-run wrote a file"


@pytest.mark.parametrize("op", sorted(S.OPS))
@fuzz_settings(fast=10, weight=0.25)
@given(data=st.data())
def test_each_mutation_kind(op, data):
    """Every mutation operator on its own, so each gets examples even in the fast run."""
    base = data.draw(S.generated_bases(), label="base")
    _check(data.draw(S.mutations(base, ops=(op,), max_ops=2), label="mutation"), measure_memory=False, **LIB)


@fuzz_settings(fast=4, weight=0.05)
@given(plan=S.model_plans())
def test_truncated_at_every_boundary(plan):
    """Truncation at every region boundary (+-1) of one base: open, accessors and verify."""
    from . import model as M

    base = M.build(plan)
    fm = S.file_map(base)
    cuts = sorted({min(max(b + d, 0), len(base)) for b in fm.boundaries() for d in (-1, 0, 1)})
    for c in cuts:
        H.exercise(H.scratch_file(base[:c]), tensors=4, measure_memory=False, inference=False, **LIB)


# -- verify must notice damage -----------------------------------------------------------------

def _verify_or_skip():
    vf = H.verify_fn()
    if vf is None:
        pytest.skip("sbs_tools.verify_file(path, deep=...) does not exist yet")
    return vf


@lru_cache(maxsize=32)
def _baseline(digest: str, data: bytes):
    return H.verify_fn()(str(H.scratch_file(data, "base.sbs")), deep=True)


def _assert_flagged(base: bytes, mut: S.Mutated) -> None:
    vf = _verify_or_skip()
    level, reasons = oracle.expectation(base, mut.data)
    note("\n".join(mut.ops + reasons) + f"\nexpectation: {level}")
    if level == "none":
        return
    baseline = _baseline(hashlib.sha1(base).hexdigest(), base)
    rep = H.bounded("verify(deep=True)", lambda: vf(str(H.scratch_file(mut.data)), deep=True),
                    size=len(mut.data), time_factor=4.0, measure_memory=False).value
    assert rep is not None, "verify raised instead of reporting"
    severities = ("error", "warning") if level == "flag" else ("error", "warning", "info")
    new = oracle.new_findings(rep, baseline, severities)
    note(f"new findings: {dict(new)}; all: {[(x.code, x.severity) for x in rep.findings]}")
    assert new, f"verify reported nothing new for a '{level}' mutation: {mut.ops} ({reasons})"


@fuzz_settings(fast=200, weight=2.0)
@given(data=st.data())
def test_verify_flags_damage(data):
    """A mutation that changes anything gemma.cpp reads (or a padding byte) is never 'clean'."""
    base = data.draw(S.generated_bases(), label="base")
    _assert_flagged(base, data.draw(S.mutations(base), label="mutation"))


@fuzz_settings(fast=30, weight=0.5)
@given(data=st.data())
def test_verify_flags_damage_in_fixtures(data):
    base = data.draw(S.fixture_bases(max_bytes=1 << 20), label="base")
    _assert_flagged(base, data.draw(S.mutations(base), label="mutation"))


def test_oracle_sanity():
    """The oracle itself: identical files need nothing; padding and header changes must be flagged."""
    from . import model as M

    base = M.pack([("config", b"\x01\x00\x00\x00" * 2), ("toc", b"\x00" * 4)], "v1")
    assert oracle.expectation(base, base)[0] == "none"
    mut = bytearray(base)
    mut[200] = 1  # V1 directory padding
    assert oracle.expectation(base, bytes(mut))[0] == "flag"
    mut = bytearray(base)
    mut[9] ^= 1  # file_bytes
    assert oracle.expectation(base, bytes(mut))[0] == "flag"
    assert oracle.expectation(base, base[:-1])[0] == "flag"


def test_oracle_key_swap_between_same_size_tensors_of_different_types():
    """Found by the long run: swapping the keys of a 16-value BF16 tensor and an 8-value F32 one
    (both 32 bytes) makes a well-formed file holding other values. The oracle may demand a finding
    only when the bytes, read as the new type, are defective (here: a BF16 NaN)."""
    import numpy as np

    from sbs_tools.toc import TocRecord, encode_toc

    from . import model as M

    recs = [TocRecord("norm", M.BF16, 2, 16, 1, 16, 1.0, 16), TocRecord("bias", M.F32, 4, 8, 1, 8, 1.0, 8)]

    def build(f32_values, names=("norm", "bias")) -> bytes:
        bf = M.bf16_bits(np.linspace(0.5, 1.5, 16, dtype=np.float32)).tobytes()
        return M.pack([("config", b"\x01\x00\x00\x00" * 2), ("toc", encode_toc(recs)),
                       (names[0], bf), (names[1], np.asarray(f32_values, "<f4").tobytes())], "v2")

    fine = np.full(8, 0.25, dtype=np.float32)  # low halves 0x0000: BF16 zeros
    base, swapped = build(fine), build(fine, ("bias", "norm"))
    assert len(base) == len(swapped) and base != swapped
    assert oracle.expectation(base, swapped)[0] == "none"
    nan_low = np.array([0x3F807FC0] * 8, dtype="<u4").view("<f4")  # finite F32, NaN in its low BF16
    assert oracle.expectation(build(nan_low), build(nan_low, ("bias", "norm")))[0] == "flag"


def test_oracle_vit_layer_norm_flags_are_not_shape_fields():
    """Found by the long run: a ViT layer's post_norm/use_qk_norm/ff_biases change no tensor (its
    norms are LayerNorm scale+bias, spec §5), so the oracle must not demand a finding for them; an
    LLM layer's post_norm adds post_att_ns/post_ff_ns and must."""
    import dataclasses

    cfg = sbs_tools.open(CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs").config
    v = cfg.vit_config
    vit0 = dataclasses.replace(v.layer_configs[0], post_norm=1 - v.layer_configs[0].post_norm)
    vit_changed = dataclasses.replace(cfg, vit_config=dataclasses.replace(v, layer_configs=[vit0, *v.layer_configs[1:]]))
    assert oracle._shape_view(vit_changed) == oracle._shape_view(cfg)
    llm0 = dataclasses.replace(cfg.layer_configs[0], post_norm=1 - cfg.layer_configs[0].post_norm)
    assert oracle._shape_view(dataclasses.replace(cfg, layer_configs=[llm0, *cfg.layer_configs[1:]])) != \
        oracle._shape_view(cfg)


#: inference.load refusals that are about the decoder's own limits, not about a broken file.
INFERENCE_LIMITS = {"inference-unsupported", "inference-no-config"}


@fuzz_settings(fast=100, weight=1.0)
@given(data=st.data())
def test_entry_points_agree_with_verify(data):
    """If any entry point refuses a file as broken, ``verify(deep=True)`` does not call it ok:
    ``open`` (strict), ``tensor()`` of any tensor, ``inference.load`` (except refusals about the
    decoder's own limits)."""
    _verify_or_skip()
    base = data.draw(S.generated_bases(), label="base")
    mut = data.draw(S.mutations(base), label="mutation")
    ex = _check(mut, measure_memory=False, **LIB)
    rep = ex.verify_report
    newer = any(x.code == "newer-format" for x in rep.findings)  # values this release cannot decode, said so
    refused = {what: code for what, code in ex.errors().items()
               if what != ".raw(missing)" and not (what == "inference.load" and code in INFERENCE_LIMITS)
               and what not in ("open(strict=False)",) and not (newer and code == "unknown-type")}
    note(f"refusals: {refused}; verify: {[(x.code, x.severity) for x in rep.findings]}")
    if refused:
        assert not rep.ok, f"entry points refused the file ({refused}) but verify says ok"


# -- verify's mutation library (tests/mutations.py): one precise defect per finding code ----------

@lru_cache(maxsize=1)
def _catalogue() -> tuple[tuple[str, bytes], ...]:
    """Every file of ``tests.mutations.CATALOGUE``, built once."""
    import tempfile
    from pathlib import Path

    try:
        from tests import mutations as lib
    except ModuleNotFoundError:  # pragma: no cover - the library is part of the verify work
        return ()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, m in enumerate(lib.CATALOGUE):
            d = Path(tmp) / str(i)
            d.mkdir()
            path, _ = m.apply(d)
            out.append((m.name, Path(path).read_bytes()))
    return tuple(out)


@fuzz_settings(fast=60, weight=0.5)
@given(data=st.data())
def test_catalogue_defects_and_their_mutations(data):
    """Each catalogued single defect (every verify finding code has one), as is and with random
    mutations stacked on top: the contract holds for every entry point."""
    cat = _catalogue()
    if not cat:
        pytest.skip("tests/mutations.py (verify's mutation library) is not available")
    name, raw = data.draw(st.sampled_from(cat), label="catalogue entry")
    mut = S.Mutated(raw, [f"catalogue {name}"])
    if data.draw(st.booleans(), label="mutate further"):
        try:
            S.file_map(raw)
            readable = True
        except Exception:
            readable = False
        if readable:
            more = data.draw(S.mutations(S._base(raw, name)), label="mutation")
            mut = S.Mutated(more.data, mut.ops + more.ops)
        elif raw:  # not a readable store: blind byte edits
            buf = bytearray(raw)
            at = data.draw(st.integers(0, len(buf) - 1), label="at")
            chunk = data.draw(st.binary(min_size=1, max_size=16), label="bytes")
            buf[at:at + len(chunk)] = chunk
            mut = S.Mutated(bytes(buf), mut.ops + [f"overwrite @{at} with {chunk.hex()}"])
    _check(mut, measure_memory=data.draw(st.booleans(), label="measure memory"), **LIB)
