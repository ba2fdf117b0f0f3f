"""docs/errors.md names every error code the source can produce (exceptions, problems, findings)."""
from __future__ import annotations

import re

from . import error_codes


def test_every_code_is_documented():
    doc = (error_codes.ROOT / "docs" / "errors.md").read_text()
    documented = set(re.findall(r"`([a-z0-9]+(?:-[a-z0-9]+)*)`", doc))
    missing = sorted(error_codes.all_codes() - documented)
    assert not missing, (f"codes missing from docs/errors.md: {missing}; "
                         "regenerate it with `python -m tests.fuzz.error_codes --write`")


def test_the_document_is_current():
    """Every raise site is listed with its check: a new or changed message means regenerating."""
    doc = (error_codes.ROOT / "docs" / "errors.md").read_text()
    assert doc == error_codes.markdown(), (
        "docs/errors.md is stale; regenerate it with `python -m tests.fuzz.error_codes --write`")


def test_the_extractor_finds_the_read_path_codes():
    codes = {s.code for s in error_codes.exception_sites()}
    assert {"not-sbs", "bad-magic", "empty-file", "too-many-blobs", "directory-out-of-bounds", "fields-structure",
            "fields-value", "config-undecodable", "config-invalid", "toc-undecodable", "no-such-tensor",
            "tensor-size-mismatch", "blob-out-of-bounds", "file-size-mismatch", "blob-gap"} <= codes
