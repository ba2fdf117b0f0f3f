"""URL inputs against real servers: an HTTP server that honours Range, one that ignores it, and
moto's S3 in server mode spoken to by s3fs over HTTP. No mocked file systems."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")

import sbs_tools  # noqa: E402
from sbs_tools import source  # noqa: E402
from sbs_tools.cli import main  # noqa: E402

from .servers import bucket, environ, http_server, s3_server, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
CORPUS = sorted(str(p.relative_to(FIXTURES)) for pat in ("corpus/v*/*.sbs", "corpus/broken/*.sbs", "legacy/*.sbs")
                for p in FIXTURES.glob(pat))
LINE = re.compile(r"^error: \[[a-z0-9-]+\] [^\n]+\n$")


@pytest.fixture(scope="module")
def http():
    with http_server(FIXTURES) as (base, state):
        yield base, state


@pytest.fixture(autouse=True)
def _settings():
    saved = dict(source.SETTINGS.__dict__)
    yield
    source.SETTINGS.__dict__.update(saved)


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def strip(obj, drop=("path", "transfer")):
    """The JSON without the keys that name the input (and the transfer object)."""
    if isinstance(obj, dict):
        return {k: strip(v, drop) for k, v in obj.items() if k not in drop}
    if isinstance(obj, list):
        return [strip(v, drop) for v in obj]
    return obj


def local_and_remote(capsys, base, rel, *args):
    rc_l, out_l, err_l = run(capsys, *args, FIXTURES / rel)
    rc_r, out_r, err_r = run(capsys, *args, base + rel)
    return (rc_l, out_l, err_l), (rc_r, out_r, err_r)


@pytest.mark.parametrize("rel", CORPUS)
def test_inspect_and_verify_json_equal_local(http, capsys, rel):
    base, _ = http
    for cmd in (["inspect", "--json"], ["verify", "--json"]):
        (rc_l, out_l, err_l), (rc_r, out_r, err_r) = local_and_remote(capsys, base, rel, *cmd)
        assert rc_l == rc_r, (cmd, err_r)
        if rc_l == 2:  # inspect of a file open() refuses: the same one-line error, apart from the path
            assert err_r.replace(base, str(FIXTURES) + "/") == err_l
            continue
        remote = json.loads(out_r)
        assert remote["transfer"]["requests"] >= 1 and remote["transfer"]["bytes"] > 0
        assert strip(remote) == strip(json.loads(out_l)), cmd


@pytest.mark.parametrize("rel", CORPUS)
def test_deep_verify_and_hash_equal_local(http, capsys, rel):
    base, _ = http
    (rc_l, out_l, _), (rc_r, out_r, err_r) = local_and_remote(capsys, base, rel, "verify", "--deep", "--json")
    assert rc_l == rc_r, err_r
    assert strip(json.loads(out_r)) == strip(json.loads(out_l))
    for per in ("tensor", "file"):
        (rc_l, out_l, err_l), (rc_r, out_r, err_r) = local_and_remote(capsys, base, rel, "hash", "--per", per,
                                                                      "--json")
        assert rc_l == rc_r, err_r
        if rc_l == 0:
            assert strip(json.loads(out_r)) == strip(json.loads(out_l))


def test_text_output_equals_local_apart_from_the_path(http, capsys):
    base, _ = http
    rel = "corpus/broken/broken-vit-missing-att_ein_1.sbs"
    for cmd in (["inspect"], ["verify"]):  # (dump's tables are as wide as the path)
        (rc_l, out_l, _), (rc_r, out_r, _) = local_and_remote(capsys, base, rel, *cmd)
        assert rc_l == rc_r
        assert out_r.replace(base + rel, "F") == out_l.replace(str(FIXTURES / rel), "F")
    (rc_l, out_l, _), (rc_r, out_r, _) = local_and_remote(capsys, base, rel, "dump", "--json")
    assert rc_l == rc_r == 0 and strip(json.loads(out_r)) == strip(json.loads(out_l))


def test_v2_inspect_reads_only_the_metadata(http, capsys):
    """footer + directory + config + toc + 64 KiB at most, in the server's own access log."""
    base, state = http
    for rel in [r for r in CORPUS if "/v2/" in r]:
        with sbs_tools.open(FIXTURES / rel) as f:
            d = f.directory
            budget = 16 + d.dir_bytes + f.blobs["config"].size + f.blobs["toc"].size + 65536
        with state.lock:
            state.log.clear()
        rc, out, _ = run(capsys, "inspect", "--json", base + rel)
        assert rc == 0
        moved = json.loads(out)["transfer"]["bytes"]
        wait_until(lambda: state.sent("/" + rel) >= moved, 5)  # the server logs a request after answering it
        gets = state.requests("/" + rel)
        sent = sum(x.sent for x in gets)
        assert sent <= budget, (rel, sent, budget, [(x.range, x.sent) for x in gets])
        assert all(x.status == 206 for x in gets)
        assert moved == sent
        assert len(gets) <= 4


def test_remote_api_and_other_commands(http, capsys, tmp_path):
    base, _ = http
    rel = "corpus/v2/gemma3-1b-tiny-bf16.sbs"
    with sbs_tools.open(base + rel) as r, sbs_tools.open(FIXTURES / rel) as loc:
        assert r.remote and not loc.remote and loc.transfer is None
        name = next(iter(loc.tensors))
        assert (r.tensor(name) == loc.tensor(name)).all()
        assert r.tokenizer_bytes == loc.tokenizer_bytes
        assert r.transfer["requests"] >= 3
    (rc_l, out_l, _), (rc_r, out_r, _) = local_and_remote(capsys, base, rel, "dump", "--json", "--tensor", name,
                                                          "--stats")
    assert rc_l == rc_r == 0 and strip(json.loads(out_r)) == strip(json.loads(out_l))
    other = FIXTURES / "corpus/v2/gemma3-1b-tiny-sfp.sbs"
    rc_l, out_l, _ = run(capsys, "diff", "--json", FIXTURES / rel, other)
    rc_r, out_r, _ = run(capsys, "diff", "--json", base + rel, other)
    assert rc_l == rc_r == 1 and strip(json.loads(out_r), ("a", "b", "transfer")) == strip(json.loads(out_l),
                                                                                         ("a", "b", "transfer"))
    rc, _, err = run(capsys, "export", base + rel, tmp_path / "r.safetensors", "-q")
    assert rc == 0, err
    run(capsys, "export", FIXTURES / rel, tmp_path / "l.safetensors", "-q")
    from safetensors.numpy import load_file

    a, b = load_file(tmp_path / "r.safetensors"), load_file(tmp_path / "l.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    rc, _, err = run(capsys, "report", base + rel, "-o", tmp_path / "r.html", "-q")
    assert rc == 0 and (tmp_path / "r.html").stat().st_size > 1000, err
    manifest = tmp_path / "m.txt"
    rc, out, _ = run(capsys, "hash", base + rel)
    manifest.write_text(out)
    rc, out, err = run(capsys, "hash", "--check", manifest)
    assert rc == 0, out + err


def test_server_that_ignores_range(capsys, tmp_path):
    rel = "corpus/v2/gemma2-2b-tiny-sfp.sbs"
    with http_server(FIXTURES, ignore_range=True) as (base, state):
        for cmd in (["inspect"], ["verify"], ["hash"]):
            rc, out, err = run(capsys, *cmd, base + rel)
            assert rc == 2 and LINE.match(err) and err.startswith("error: [range-unsupported] "), (cmd, err)
        assert state.sent() < 4 << 20
        rc_l, out_l, _ = run(capsys, "inspect", "--json", FIXTURES / rel)
        rc, out, err = run(capsys, "inspect", "--json", "--allow-full-download", base + rel)
        assert rc == 0, err
        remote = json.loads(out)
        assert remote["transfer"]["bytes"] >= os.path.getsize(FIXTURES / rel)
        assert strip(remote) == strip(json.loads(out_l))
    # refused before the body is read: of a 256 MiB file, only what the socket buffers took moved
    big = tmp_path / "big.sbs"
    with open(big, "wb") as fh:
        fh.truncate(256 << 20)
    with http_server(tmp_path, ignore_range=True) as (base, state):
        rc, out, err = run(capsys, "verify", base + "big.sbs")
        assert rc == 2 and err.startswith("error: [range-unsupported] "), err
        assert state.sent() < 32 << 20
    leftovers = [p for p in os.listdir(os.environ.get("TMPDIR", "/tmp")) if p.startswith(".sbs-download.")]
    assert not leftovers


@pytest.mark.parametrize("options", [{}, {"headers": {"X-Sbs-Test": "1"}}], ids=["http.client", "aiohttp"])
def test_http_error_codes(capsys, tmp_path, monkeypatch, options):
    monkeypatch.setattr(source.SETTINGS, "timeout", 0.5)
    monkeypatch.setattr(source.SETTINGS, "retries", 2)
    source.configure(storage_options=options)
    shutil.copy(FIXTURES / "corpus/v2/gemma2-2b-tiny-sfp.sbs", tmp_path / "m.sbs")
    with http_server(tmp_path) as (base, state):
        state.statuses["/forbidden.sbs"] = 403
        state.statuses["/broken.sbs"] = 500
        state.stall.add("/slow.sbs")
        cases = {"missing.sbs": "not-found", "forbidden.sbs": "permission-denied", "broken.sbs": "remote-error",
                 "slow.sbs": "remote-timeout"}
        for name, code in cases.items():
            for cmd in (["inspect"], ["verify"], ["hash"]):
                rc, out, err = run(capsys, *cmd, base + name)
                assert rc == 2 and LINE.match(err) and err.startswith(f"error: [{code}] "), (name, cmd, err)
        # 500 is retried (2 tries in all), 403 is not
        assert len(state.requests("/broken.sbs", "HEAD")) == 3 * 2
        assert len(state.requests("/forbidden.sbs", "HEAD")) == 3
    # nothing listens there any more
    for cmd in (["inspect"], ["verify"]):
        rc, out, err = run(capsys, *cmd, base + "m.sbs")
        assert rc == 2 and LINE.match(err) and err.startswith("error: [host-unreachable] "), err
    rc, out, err = run(capsys, "inspect", "nosuchproto://x/y.sbs")
    assert rc == 2 and err.startswith("error: [remote-unsupported] "), err


def test_file_that_changes_between_requests(tmp_path, capsys):
    src = FIXTURES / "corpus/v2/gemma2-2b-tiny-f32.sbs"
    shutil.copy(src, tmp_path / "m.sbs")
    with http_server(tmp_path) as (base, _):
        f = sbs_tools.open(base + "m.sbs")
        with open(tmp_path / "m.sbs", "ab") as fh:
            fh.write(b"\0" * 65536)  # the publisher replaces the file with a longer one
        with pytest.raises(sbs_tools.FileChangedError):
            for name in f.tensors:
                f.tensor(name)
        f.close()
        shutil.copy(src, tmp_path / "m.sbs")
        f = sbs_tools.open(base + "m.sbs")
        os.truncate(tmp_path / "m.sbs", 4096)
        with pytest.raises(sbs_tools.FileChangedError):
            for name in f.tensors:
                f.tensor(name)
        f.close()
        shutil.copy(src, tmp_path / "m.sbs")
        report = sbs_tools.verify_file(base + "m.sbs", deep=True)
        assert report.ok


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    with environ(**env), s3_server() as endpoint:
        with bucket("s3", {"endpoint_url": endpoint, "key": "testing", "secret": "testing"},
                    {rel: str(FIXTURES / rel) for rel in CORPUS}):
            yield endpoint, env


COMMANDS = (["inspect", "--json"], ["verify", "--json"], ["verify", "--deep", "--json"], ["hash", "--json"])


def equal_local(capsys, url: str, rel: str, commands=COMMANDS) -> None:
    """Each command gives the same exit code and JSON (or one-line error) for ``url`` as for the corpus
    file ``rel``, apart from the path and the transfer object."""
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


@pytest.mark.parametrize("rel", CORPUS)
def test_s3_equals_local(s3, capsys, rel):
    equal_local(capsys, f"s3://models/{rel}", rel)


def test_s3_errors_and_prefix(s3, capsys, tmp_path):
    rc, out, err = run(capsys, "inspect", "s3://models/corpus/nope.sbs")
    assert rc == 2 and err.startswith("error: [not-found] "), err
    rc, out, err = run(capsys, "verify", "s3://no-such-bucket/x.sbs")
    assert rc == 2 and LINE.match(err) and err.startswith("error: [not-found] "), err
    rc, out, err = run(capsys, "verify", "--json", "s3://models/corpus/v2/")
    doc = json.loads(out)
    assert rc == 0 and len(doc["files"]) == len([r for r in CORPUS if r.startswith("corpus/v2/")])


# -- bulk reads: read-ahead --------------------------------------------------------------------------
_MIB = 1 << 20


def _ranges(state, name: str) -> list[tuple[int, int]]:
    out = []
    for a in state.requests("/" + name):
        if a.range:
            lo, hi = a.range.split("=", 1)[1].split("-")
            out.append((int(lo), int(hi) + 1))
    return out


def _scan(src, upto: int, piece: int = _MIB, start: int = 0) -> None:
    import numpy as np

    buf = np.empty(piece, dtype=np.uint8)
    pos = start
    while pos < upto:
        n = min(piece, upto - pos)
        src.read_into(pos, buf[:n])
        pos += n


@pytest.mark.parametrize("options", [{}, {"headers": {"Authorization": "Basic c2JzOnNicw=="}}],
                         ids=["http.client", "aiohttp"])
def test_read_ahead_stays_inside_the_file_and_reads_each_byte_once(tmp_path, options):
    """A sequential scan streams in 16 MiB blocks with the next one in flight (over http.client for a
    plain URL, over fsspec's aiohttp session when storage options are given, their headers sent with
    every request): the bytes are those of the file, no range goes past its end and no byte is
    fetched twice."""
    import numpy as np

    from sbs_tools.source.remote import RemoteSource

    size = 53 * _MIB + 12345
    data = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8)
    data.tofile(tmp_path / "big.bin")
    source.configure(storage_options=options)
    with http_server(tmp_path) as (base, state):
        src = RemoteSource(base + "big.bin")
        assert src._backend.plain == (not options)
        out = np.empty(size, dtype=np.uint8)
        pos = 0
        while pos < size:  # pieces that do not divide the blocks
            n = min(3 * _MIB + 7, size - pos)
            src.read_into(pos, out[pos:pos + n])
            pos += n
        src.close()
        assert np.array_equal(out, data)
        ranges = sorted(_ranges(state, "big.bin"))
        assert all(b <= size for _, b in ranges)
        assert ranges[0][0] == 0 and all(a == b for (_, a), (b, _) in zip(ranges, ranges[1:]))  # contiguous
        assert ranges[-1][1] == size and state.sent("/big.bin") == size
        assert {x.auth for x in state.log} == {options.get("headers", {}).get("Authorization")}


def test_scan_pieces_are_views_of_the_read_ahead_block(tmp_path):
    """Once a sequential scan streams, ``view`` lends pieces of the read-ahead block instead of copying
    them into the caller's buffer (pieces across two blocks are still copied); the bytes are the
    file's and each byte is fetched once. A local file fills the caller's buffer."""
    import numpy as np

    from sbs_tools.source.local import LocalSource
    from sbs_tools.source.remote import RemoteSource

    size = 53 * _MIB + 12345
    data = np.random.default_rng(2).integers(0, 256, size, dtype=np.uint8)
    data.tofile(tmp_path / "big.bin")
    buf = np.empty(_MIB + 7, dtype=np.uint8)
    with http_server(tmp_path) as (base, state):
        src = RemoteSource(base + "big.bin")
        out = np.empty(size, dtype=np.uint8)
        pos = pieces = lent = 0
        while pos < size:
            v = src.view(pos, buf[:min(buf.size, size - pos)])
            out[pos:pos + v.size] = v
            lent += not np.shares_memory(v, buf)
            pieces += 1
            pos += v.size
        src.close()
        assert np.array_equal(out, data)
        assert lent >= pieces - 10, (lent, pieces)  # the first reads and a few block edges are copied
        assert state.sent("/big.bin") == size
    local = LocalSource(str(tmp_path / "big.bin"))
    v = local.view(4096, buf)
    assert np.shares_memory(v, buf) and np.array_equal(v, data[4096:4096 + buf.size])
    local.close()


def test_multi_block_file_deep_and_hash_equal_local_and_move_each_byte_once(tmp_path, capsys):
    """A file of several read-ahead blocks (the corpus files fit in one): ``verify --deep`` and ``hash``
    (per tensor: its blobs as one stream in file order, not split between threads that read ahead
    into each other's blobs) equal the local results and move the file's bytes once."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    import make_large

    path = tmp_path / "m.sbs"
    make_large.make_large(path, "gemma2-2b", "sfp", scale=0.14, seed=5)
    size = path.stat().st_size
    assert size > 3 * 16 * _MIB
    with http_server(tmp_path) as (base, _):
        for cmd in (["verify", "--deep", "--json"], ["hash", "--json"], ["hash", "--per", "file", "--json"]):
            (rc_l, out_l, _), (rc_r, out_r, err_r) = (run(capsys, *cmd, path), run(capsys, *cmd, base + "m.sbs"))
            assert rc_l == rc_r, err_r
            remote = json.loads(out_r)
            assert strip(remote) == strip(json.loads(out_l)), cmd
            assert size <= remote["transfer"]["bytes"] <= size + (256 << 10), cmd  # + the metadata read at open


def test_closing_mid_scan_stops_the_read_ahead(tmp_path):
    import concurrent.futures

    from sbs_tools.source.remote import RemoteSource

    size = 200 * _MIB
    with open(tmp_path / "big.bin", "wb") as fh:
        fh.truncate(size)
    with http_server(tmp_path) as (base, state):
        src = RemoteSource(base + "big.bin")
        _scan(src, 40 * _MIB)
        inflight = list(src._inflight)
        src.close()
        concurrent.futures.wait(inflight, timeout=30)
        assert wait_until(lambda: len(state.requests("/big.bin")) == len(_ranges(state, "big.bin")))
        n = len(state.log)
        with pytest.raises(sbs_tools.SbsError) as e:
            _scan(src, 1)
        assert e.value.code == "io-error"
        with pytest.raises(sbs_tools.SbsError):
            src.read_into(40 * _MIB, bytearray(_MIB))
        assert len(state.log) == n
        # at most the block being used and the one after it beyond what was read
        assert max(b for _, b in _ranges(state, "big.bin")) <= 40 * _MIB + 2 * 16 * _MIB
        assert state.sent("/big.bin") <= 40 * _MIB + 2 * 16 * _MIB


@pytest.mark.parametrize("change", ["append", "truncate"])
def test_file_changed_during_read_ahead(tmp_path, change):
    from sbs_tools.source.remote import RemoteSource

    size = 96 * _MIB
    with open(tmp_path / "big.bin", "wb") as fh:
        fh.truncate(size)
    with http_server(tmp_path) as (base, _):
        src = RemoteSource(base + "big.bin")
        _scan(src, 33 * _MIB)  # streaming in 16 MiB blocks by now, the next one requested
        if change == "append":
            with open(tmp_path / "big.bin", "ab") as fh:
                fh.write(b"\1" * 4096)
        else:
            os.truncate(tmp_path / "big.bin", 40 * _MIB)
        assert src._inflight or src._ra.state.pending is not None
        with pytest.raises(sbs_tools.FileChangedError):
            _scan(src, size, start=33 * _MIB)  # on from where it was: the read-ahead's answer first
        src.close()


def test_report_fetches_the_metadata_once(http, capsys, tmp_path):
    """`sbs report URL` opens its input once: the metadata ranges reach the server once, not per check."""
    base, state = http
    rel = "corpus/v2/gemma2-2b-tiny-sfp.sbs"
    with state.lock:
        state.log.clear()
    rc, _, err = run(capsys, "report", base + rel, "-o", tmp_path / "r.html", "-q")
    assert rc == 0, err
    wait_until(lambda: bool(state.requests("/" + rel)), 5)
    ranges = [x.range for x in state.requests("/" + rel) if x.range]
    assert ranges and len(ranges) == len(set(ranges)), ranges


def test_plain_http_imports_neither_fsspec_nor_aiohttp(http):
    """A plain http:// URL is read over http.client without importing fsspec or aiohttp (~0.2 s of start-up);
    fsspec configuration for http (here FSSPEC_HTTP, which may carry headers or auth) brings them back."""
    import subprocess
    import sys

    base, state = http
    url = base + "corpus/v2/gemma3-1b-tiny-sfp.sbs"
    code = ("import contextlib, io, json, sys\nfrom sbs_tools.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    rc = main(sys.argv[1:])\n"
            "print(json.dumps([rc, 'fsspec' in sys.modules, 'aiohttp' in sys.modules]))")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for extra, imported in (({}, False), ({"FSSPEC_HTTP": '{"headers": {"X-Sbs-Test": "1"}}'}, True)):
        for argv in (["inspect", url], ["verify", "--deep", url]):
            r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                               env={**env, **extra}, timeout=120)
            rc, fs, aio = json.loads(r.stdout.strip().splitlines()[-1])
            assert rc == 0 and fs == aio == imported, (argv, extra, r.stderr)
