"""gs:// and hf:// inputs against real servers: gcp-storage-emulator spoken to by gcsfs over HTTP, and
two HTTP servers standing in for the Hugging Face hub (resolve URLs redirected to a server that
honours Range). Output equals the local file's apart from the path; errors are one line with a code."""
from __future__ import annotations

import contextlib
import json
import sys

import pytest

pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")

from .servers import bucket, environ, gcs_server, http_server, hub_server  # noqa: E402
from .test_remote import CORPUS, FIXTURES, LINE, equal_local, run, strip  # noqa: E402

# -- gs:// -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gcs():
    """The emulator with the corpus in bucket ``models``; gcsfs pointed at it, anonymous."""
    pytest.importorskip("gcsfs")
    pytest.importorskip("gcp_storage_emulator")
    with environ(GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false"), _plain_gcsfs(), gcs_server() as endpoint:
        with bucket("gs", {"endpoint_url": endpoint, "token": "anon", "project": "test"},
                    {rel: str(FIXTURES / rel) for rel in CORPUS}):
            yield endpoint


@contextlib.contextmanager
def _plain_gcsfs():
    """gcsfs's default file system (GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT) asks Google's gRPC storage-control
    API what kind each bucket is, which an emulator does not serve (a 60 s timeout per bucket): the
    plain ``gcsfs.core.GCSFileSystem``, which that one falls back to for ordinary buckets, is used."""
    import fsspec
    import gcsfs.core

    saved = {p: fsspec.registry.get(p) for p in ("gs", "gcs")}
    for p in saved:
        fsspec.register_implementation(p, gcsfs.core.GCSFileSystem, clobber=True)
    try:
        yield
    finally:
        for p, cls in saved.items():
            if cls is None:
                sys.modules["fsspec.registry"]._registry.pop(p, None)  # back to known_implementations' lazy entry
            else:
                fsspec.register_implementation(p, cls, clobber=True)


@pytest.mark.parametrize("rel", CORPUS)
def test_gs_equals_local(gcs, capsys, rel):
    equal_local(capsys, f"gs://models/{rel}", rel)


def test_gs_errors(gcs, capsys):
    for url in ("gs://models/corpus/nope.sbs", "gs://no-such-bucket/x.sbs"):
        for cmd in (["inspect"], ["verify"], ["hash"]):
            rc, out, err = run(capsys, *cmd, url)
            assert rc == 2 and LINE.match(err) and err.startswith("error: [not-found] "), (url, cmd, err)


def test_gs_forbidden(gcs, capsys, tmp_path, monkeypatch):
    """A GCS endpoint that answers 403 (a private bucket read anonymously): ``permission-denied``."""
    import fsspec

    with http_server(tmp_path) as (base, state):
        for path in ("/storage/v1/b/private/o/m.sbs", "/storage/v1/b/private/o", "/storage/v1/b/private"):
            state.statuses[path] = 403
        monkeypatch.setitem(fsspec.config.conf, "gs", {"endpoint_url": base.rstrip("/"), "token": "anon",
                                                       "project": "test"})
        for cmd in (["inspect"], ["verify"], ["hash"]):
            rc, out, err = run(capsys, *cmd, "gs://private/m.sbs")
            assert rc == 2 and LINE.match(err) and err.startswith("error: [permission-denied] "), (cmd, err)
        assert state.log and all(x.status == 403 for x in state.log)


# -- hf:// -------------------------------------------------------------------------------------------
REPOS = {"sbs/corpus": {"main", "v1", "refs/pr/1"}, "datasets/sbs/corpus": {"main"}, "sbs/private": {"main"}}


@pytest.fixture(scope="module")
def hub():
    """The corpus on a CDN that honours Range, behind a hub that redirects resolve URLs to it."""
    with http_server(FIXTURES) as (cdn, cdn_state):
        with hub_server(FIXTURES, cdn, REPOS, private={"sbs/private": "secret"}) as (endpoint, hub_state):
            yield endpoint, hub_state, cdn_state


@pytest.fixture
def hf(hub, monkeypatch):
    endpoint, hub_state, cdn_state = hub
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with hub_state.lock, cdn_state.lock:
        hub_state.log.clear()
        cdn_state.log.clear()
    return hub_state, cdn_state


@pytest.mark.parametrize("rel", CORPUS)
def test_hf_equals_local(hf, capsys, rel):
    equal_local(capsys, f"hf://sbs/corpus/{rel}", rel)


@pytest.mark.parametrize("options", [{}, {"headers": {"Authorization": "Basic c2JzOnNicw=="}}],
                         ids=["http.client", "aiohttp"])
def test_hf_reads_ranges_from_where_the_hub_redirects(hf, capsys, monkeypatch, options):
    """One HEAD at the hub (followed to the CDN), then only ranged GETs at the CDN; the token goes to the
    hub alone (nor do the storage options' credentials follow the redirect); dataset repos and
    revisions (``refs/pr/1`` URL-encoded) resolve too. Over http.client, and over aiohttp (what an
    https hub gets)."""
    from sbs_tools import source

    monkeypatch.setattr(source.SETTINGS, "storage_options", options)
    hub_state, cdn_state = hf
    rel = "corpus/v2/gemma3-1b-tiny-sfp.sbs"
    monkeypatch.setenv("HF_TOKEN", "secret")
    for url in (f"hf://sbs/private/{rel}", f"hf://datasets/sbs/corpus/{rel}", f"hf://sbs/corpus@v1/{rel}",
                f"hf://sbs/corpus@refs%2Fpr%2F1/{rel}"):
        equal_local(capsys, url, rel, (["inspect", "--json"], ["hash", "--json"]))
    hub_paths = [(x.method, x.path) for x in hub_state.log]
    assert {m for m, _ in hub_paths} == {"HEAD"} and len(hub_paths) == 8, hub_paths
    assert {p for _, p in hub_paths} == {"/sbs/private/resolve/main/" + rel, "/datasets/sbs/corpus/resolve/main/" + rel,
                                         "/sbs/corpus/resolve/v1/" + rel, "/sbs/corpus/resolve/refs%2Fpr%2F1/" + rel}
    assert all(x.auth == "Bearer secret" for x in hub_state.log)
    gets = cdn_state.requests("/" + rel)
    assert gets and all(x.status == 206 and x.auth is None for x in gets)
    assert all(x.auth is None for x in cdn_state.log)


def test_hf_errors(hf, capsys, tmp_path, monkeypatch):
    cases = {"hf://sbs/nope/corpus/v2/gemma3-1b-tiny-sfp.sbs": "not-found",  # no such repo
             "hf://sbs/corpus/corpus/v2/nope.sbs": "not-found",  # no such file
             "hf://sbs/corpus@v9/corpus/v2/gemma3-1b-tiny-sfp.sbs": "not-found",  # no such revision
             "hf://sbs/private/corpus/v2/gemma3-1b-tiny-sfp.sbs": "permission-denied",  # no token
             "hf://sbs": "not-found"}  # not a file on the hub
    for url, code in cases.items():
        for cmd in (["inspect"], ["verify"], ["hash"]):
            rc, out, err = run(capsys, *cmd, url)
            assert rc == 2 and LINE.match(err) and err.startswith(f"error: [{code}] "), (url, cmd, err)
    rc, out, err = run(capsys, "inspect", "hf://sbs/private/corpus/v2/gemma3-1b-tiny-sfp.sbs")
    assert "HF_TOKEN" in err
    monkeypatch.setenv("HF_TOKEN", "wrong")
    rc, out, err = run(capsys, "inspect", "hf://sbs/private/corpus/v2/gemma3-1b-tiny-sfp.sbs")
    assert rc == 2 and err.startswith("error: [permission-denied] "), err
    # the CDN refusing (403) or ignoring Range
    (tmp_path / "m.sbs").write_bytes((FIXTURES / "corpus/v2/gemma2-2b-tiny-sfp.sbs").read_bytes())
    for ignore, code in ((False, "permission-denied"), (True, "range-unsupported")):
        with http_server(tmp_path, ignore_range=ignore) as (cdn, cdn_state):
            if not ignore:
                cdn_state.statuses["/m.sbs"] = 403
            with hub_server(tmp_path, cdn, {"sbs/m": {"main"}}) as (endpoint, _):
                monkeypatch.setenv("HF_ENDPOINT", endpoint)
                rc, out, err = run(capsys, "verify", "hf://sbs/m/m.sbs")
                assert rc == 2 and LINE.match(err) and err.startswith(f"error: [{code}] "), err


@pytest.mark.parametrize("options", [{}, {"headers": {"X-Sbs-Test": "1"}}], ids=["http.client", "aiohttp"])
def test_hf_signed_url_that_expires_mid_scan_is_asked_for_again(tmp_path, capsys, monkeypatch, options):
    """The hub's CDN URLs are signed and expire: a 403 from where the hub led makes the reader ask the
    hub again for a fresh URL (same size and ETag), and the scan completes with the local result."""
    import shutil

    from sbs_tools import source

    monkeypatch.setattr(source.SETTINGS, "storage_options", options)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    rel = "corpus/v2/gemma2-2b-tiny-f32.sbs"
    shutil.copy(FIXTURES / rel, tmp_path / "m.sbs")
    rc_l, out_l, _ = run(capsys, "hash", "--json", tmp_path / "m.sbs")
    with http_server(tmp_path) as (cdn, cdn_state):
        with hub_server(tmp_path, cdn, {"sbs/m": {"main"}}, signed=True) as (endpoint, hub_state):
            monkeypatch.setenv("HF_ENDPOINT", endpoint)
            import sbs_tools

            with sbs_tools.open("hf://sbs/m/m.sbs") as f:
                cdn_state.expired.add("sig=1")  # the URL the first HEAD was led to
                names = list(f.tensors)
                for name in names:
                    f.tensor(name)
            assert len(hub_state.requests(method="HEAD")) == 2
            assert any(x.status == 403 for x in cdn_state.log)
            rc, out, err = run(capsys, "hash", "--json", "hf://sbs/m/m.sbs")
            assert rc == rc_l == 0, err
            assert strip(json.loads(out)) == strip(json.loads(out_l))
