"""gs:// and hf:// inputs against real servers: gcp-storage-emulator spoken to by gcsfs over HTTP, and
two HTTP servers standing in for the Hugging Face hub (resolve URLs redirected to a server that
honours Range). Output equals the local file's apart from the path; errors are one line with a code."""
from __future__ import annotations

import json
import os
import sys

import pytest

pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")

from .servers import gcs_server, http_server  # noqa: E402
from .test_remote import CORPUS, FIXTURES, LINE, run, strip  # noqa: E402

COMMANDS = (["inspect", "--json"], ["verify", "--json"], ["verify", "--deep", "--json"], ["hash", "--json"])


def _equal_local(capsys, url: str, rel: str, commands=COMMANDS) -> None:
    for cmd in commands:
        rc_l, out_l, err_l = run(capsys, *cmd, FIXTURES / rel)
        rc_r, out_r, err_r = run(capsys, *cmd, url)
        assert rc_l == rc_r, (cmd, err_r)
        if rc_l == 2:
            assert err_r.replace(url, "F") == err_l.replace(str(FIXTURES / rel), "F")
            continue
        remote = json.loads(out_r)
        assert remote["transfer"]["requests"] >= 1 and remote["transfer"]["bytes"] > 0, cmd
        assert strip(remote) == strip(json.loads(out_l)), cmd


# -- gs:// -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gcs():
    """The emulator with the corpus in bucket ``models``; gcsfs pointed at it, anonymous.

    gcsfs's default file system (GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT) asks Google's gRPC storage-control
    API what kind each bucket is, which an emulator does not serve (a 60 s timeout per bucket): the
    plain ``gcsfs.core.GCSFileSystem``, which that one falls back to for ordinary buckets, is used."""
    pytest.importorskip("gcsfs")
    pytest.importorskip("gcp_storage_emulator")
    import fsspec
    import gcsfs.core

    saved_env = os.environ.get("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT")
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    saved_cls = {p: fsspec.registry.get(p) for p in ("gs", "gcs")}
    for p in saved_cls:
        fsspec.register_implementation(p, gcsfs.core.GCSFileSystem, clobber=True)
    try:
        with gcs_server() as endpoint:
            fsspec.config.conf["gs"] = {"endpoint_url": endpoint, "token": "anon", "project": "test"}
            fs = fsspec.filesystem("gs", skip_instance_cache=True)
            fs.mkdir("models")
            for rel in CORPUS:
                fs.put_file(str(FIXTURES / rel), f"models/{rel}")
            yield endpoint
    finally:
        fsspec.config.conf.pop("gs", None)
        for p, cls in saved_cls.items():
            if cls is None:
                sys.modules["fsspec.registry"]._registry.pop(p, None)  # back to known_implementations' lazy entry
            else:
                fsspec.register_implementation(p, cls, clobber=True)
        if saved_env is None:
            os.environ.pop("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", None)
        else:
            os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = saved_env


@pytest.mark.parametrize("rel", CORPUS)
def test_gs_equals_local(gcs, capsys, rel):
    _equal_local(capsys, f"gs://models/{rel}", rel)


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
