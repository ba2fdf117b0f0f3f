"""Fleet scans: 40 files verified serially, with --jobs 2 and on a dask.distributed LocalCluster give the
same per-file results; a scan killed halfway resumes from its --jsonl without redoing finished files."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sbs_tools
from sbs_tools.cli import main

from .servers import http_server

ROOT = Path(__file__).resolve().parents[1]
CLEAN = sorted((ROOT / "fixtures/corpus").glob("v*/*.sbs"))
BROKEN = sorted((ROOT / "fixtures/corpus/broken").glob("*.sbs"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    """40 files: copies of the clean and broken corpus, in two sub-directories."""
    d = tmp_path_factory.mktemp("fleet")
    files = (CLEAN + BROKEN) * 4
    for i, src in enumerate(files[:40]):
        sub = d / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        shutil.copy(src, sub / f"{i:02d}-{src.name}")
    assert len(list(d.rglob("*.sbs"))) == 40
    return d


def records(path: Path) -> dict[str, dict]:
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        assert rec["path"] not in out, f"{rec['path']} verified twice"
        out[rec["path"]] = rec
    return out


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_serial_jobs_and_dask_agree(fleet, tmp_path, capsys):
    rc1, out1, _ = run(capsys, "verify", "--json", "--jsonl", tmp_path / "serial.jsonl", fleet)
    rc2, out2, _ = run(capsys, "verify", "--json", "--jobs", "2", "--jsonl", tmp_path / "jobs.jsonl", fleet)
    assert rc1 == rc2 == 1  # the broken copies have errors
    serial, jobs = records(tmp_path / "serial.jsonl"), records(tmp_path / "jobs.jsonl")
    assert len(serial) == 40 and serial == jobs
    doc1, doc2 = json.loads(out1), json.loads(out2)
    assert doc1 == doc2 and [f["path"] for f in doc1["files"]] == sorted(serial)
    broken = sum(1 for p in serial if "broken-" in p)
    assert broken >= 6
    assert doc1["summary"] == {"files": 40, "ok": 40 - broken, "errors": broken, "unreadable": 0, "resumed": 0}
    assert list(serial.values())[0] == next(f for f in doc1["files"] if f["path"] == list(serial)[0])
    # the same per-file objects as a plain `verify --json` (which adds no `input` stamp)
    rc, out, _ = run(capsys, "verify", "--json", fleet)
    plain = {f["path"]: f for f in json.loads(out)["files"]}
    assert {p: {k: v for k, v in r.items() if k != "input"} for p, r in serial.items()} == plain

    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        reports = sbs_tools.verify_many([fleet], client=client, jsonl=tmp_path / "dask.jsonl")
        assert records(tmp_path / "dask.jsonl") == serial
        assert [r.to_dict() for r in reports] == doc1["files"]
        rc, out, err = run(capsys, "verify", "--json", "--scheduler", cluster.scheduler_address, fleet)
        assert rc == 1 and json.loads(out)["files"] == doc1["files"], err


def test_killed_scan_resumes(fleet, tmp_path, capsys):
    out = tmp_path / "scan.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "sbs_tools", "verify", "--deep", "--jobs", "2", "--jsonl", str(out),
                             str(fleet)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_text().count("\n") >= 8:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the scan and its workers, mid-flight
        proc.wait(30)
    before = records(out) if out.read_text().endswith("\n") else {
        json.loads(ln)["path"]: json.loads(ln) for ln in out.read_text().splitlines()[:-1]}
    assert 8 <= len(before) < 40, len(before)
    with open(out, "ab") as fh:
        fh.write(b'{"path": "cut off mid-li')  # as if killed while writing a line
    rc, text, err = run(capsys, "verify", "--deep", "--jsonl", out, fleet)
    assert rc == 1, err
    lines = out.read_text().splitlines()
    done = {}
    for ln in lines:
        try:
            rec = json.loads(ln)
        except ValueError:
            continue
        assert rec["path"] not in done, f"{rec['path']} redone"
        done[rec["path"]] = rec
    assert len(done) == 40 and all(done[p] == r for p, r in before.items())
    assert f"({len(before)} already done in" in text
    # a file that changed since is checked again
    victim = sorted(before)[0]
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))
    rc, text, _ = run(capsys, "verify", "--deep", "--jsonl", out, fleet)
    assert "(39 already done in" in text
    assert sum(1 for ln in out.read_text().splitlines() if victim in ln) == 2


def test_jsonl_is_never_an_input(fleet, tmp_path, capsys):
    victim = next(fleet.rglob("*.sbs"))
    rc, _, err = run(capsys, "verify", "--jsonl", victim, fleet)
    assert rc == 2 and err.startswith("error: [output-is-input] "), err
    rc, _, err = run(capsys, "verify", "--jsonl", tmp_path, fleet)
    assert rc == 2 and err.startswith("error: [output-is-directory] "), err
    rc, _, err = run(capsys, "verify", "--jobs", "2", "--scheduler", "tcp://127.0.0.1:1", fleet)
    assert rc == 2 and err.startswith("error: [usage] "), err


def test_url_prefix_and_glob(tmp_path, capsys):
    for src in CLEAN[:3]:
        shutil.copy(src, tmp_path / src.name)
    with http_server(tmp_path) as (base, _):
        rc, out, err = run(capsys, "verify", "--json", "--jobs", "2", base)
        assert rc == 0, err
        assert sorted(f["path"] for f in json.loads(out)["files"]) == sorted(base + s.name for s in CLEAN[:3])
    rc, out, _ = run(capsys, "verify", "--json", str(tmp_path / "*.sbs"))
    assert rc == 0 and len(json.loads(out)["files"]) == 3
