"""Remote inputs: what `sbs` moves and how fast it streams, over a local HTTP server that honours Range.

Writes a multi-GB synthetic file with bench/make_large.py (unless --file), serves its directory with
the test suite's HTTP server (tests/servers.py, 127.0.0.1) and measures, each command in its own
process:

* ``inspect --json`` of the URL: bytes and requests (its ``transfer`` object and the server's log),
  wall time, against ``inspect --json`` of the local file;
* ``verify --deep`` and ``hash`` of the URL: throughput against a bare sequential ranged read of
  the same URL (16 MiB GETs with http.client, nothing done with the bytes; a whole process like the
  command), run right before each command so both see the same load: the ratio of each such pair,
  best / median / worst over the repeats; client CPU (user + sys) and peak RSS (``wait4``).

``--before DIR`` also runs the URL commands with the ``sbs_tools`` of another source tree (e.g.
``git archive REF | tar -x -C DIR``), interleaved with this tree's, so a change is measured against
the code before it in the same run; ``--repeat N`` runs each N times (best wall kept), for a loaded
machine.

Usage: ``python bench/remote.py [--model gemma2-2b --weight sfp] [--file F] [--keep] [--before DIR]
[--repeat N] [--rate MB/s]``. The file is deleted afterwards unless --keep or --file. ``--rate`` puts a
link of that speed in front of the server (shared by all its connections), the way a bucket or a hub
is reached over a network: the bare read is then bound by the link, and what is measured is whether
a command keeps the link busy while it decodes (loopback on a small machine instead measures client
and server competing for the same cores).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.servers import http_server  # noqa: E402

BARE = r"""
import http.client, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1]); size = int(sys.argv[2]); step = 16 << 20
c = http.client.HTTPConnection(u.hostname, u.port); buf = bytearray(step); mv = memoryview(buf)
t = time.perf_counter(); pos = 0
while pos < size:
    end = min(size, pos + step)
    c.request("GET", u.path, headers={"Range": f"bytes={pos}-{end - 1}"})
    r = c.getresponse(); assert r.status == 206; got = 0
    while got < end - pos:
        n = r.readinto(mv[got:end - pos]); got += n
        if not n: raise SystemExit("short read")
    pos = end
print(time.perf_counter() - t)
"""


def peak_rss(args: list[str], root: str = ROOT) -> tuple[float, int, str, float]:
    """(wall s, peak RSS bytes, stdout, CPU s) of one process importing ``root``'s ``sbs_tools``."""
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    # cwd=root: ``python -m`` puts the working directory first on sys.path, ahead of PYTHONPATH
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=root)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed ({code})")
    return wall, ru.ru_maxrss * 1024, out.decode(), ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gemma2-2b")
    ap.add_argument("--weight", default="sfp")
    ap.add_argument("--file", help="an existing .sbs file instead of writing one")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--before", help="a source tree whose sbs_tools is measured too (URL commands)")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs of each command")
    ap.add_argument("--rate", type=float, help="MB/s of a link in front of the server, shared by all "
                                               "connections (default: loopback, unlimited)")
    a = ap.parse_args()
    tmpdir = None
    if a.file:
        path = os.path.abspath(a.file)
    else:
        tmpdir = tempfile.mkdtemp(prefix="sbs-bench-remote.", dir=os.path.join(ROOT, "bench"))
        path = os.path.join(tmpdir, f"{a.model}-{a.weight}.sbs")
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_large.py"), a.model, a.weight, "-o", path],
                       check=True, stdout=subprocess.DEVNULL)
    size = os.path.getsize(path)
    sbs = [sys.executable, "-m", "sbs_tools"]
    rows = []
    try:
        with http_server(os.path.dirname(path), rate=a.rate * 1e6 if a.rate else None) as (base, state):
            url = base + os.path.basename(path)
            # warm the page cache for both sides
            peak_rss(sbs + ["hash", "--per", "file", path])
            wl, _, out_l, _ = peak_rss(sbs + ["inspect", "--json", path])
            meta = json.loads(out_l)
            md = {b["key"]: b["bytes"] for b in meta["blobs"]}
            state.log.clear()
            wr, _, out_r, _ = peak_rss(sbs + ["inspect", "--json", url])
            tr = json.loads(out_r)["transfer"]
            rows.append(("inspect --json (local)", f"{wl:.2f} s", "", "", "", ""))
            rows.append(("inspect --json (URL)", f"{wr:.2f} s", f"{tr['bytes']} B in {tr['requests']} requests",
                         f"metadata: config {md.get('config', 0)} + toc {md.get('toc', 0)} + directory "
                         f"{32 * len(meta['blobs'])} B", "", ""))
            bare_cmd = [sys.executable, "-c", BARE, url, str(size)]
            bares = []
            trees = [("", ROOT)] + ([(" before", os.path.abspath(a.before))] if a.before else [])
            for name, cmd in (("verify --deep (URL)", ["verify", "--deep", "--json", url]),
                              ("hash (URL)", ["hash", "--json", url]),
                              ("hash --per file (URL)", ["hash", "--per", "file", url]),
                              ("verify --deep (local)", ["verify", "--deep", "--json", path]),
                              ("hash (local)", ["hash", "--json", path])):
                runs: dict[str, list[tuple[float, int, float, float]]] = {}  # wall, rss, cpu, bare wall
                for _ in range(a.repeat):
                    for label, root in (trees if "URL" in name else trees[:1])[::-1]:
                        bw, _, _, bcpu = peak_rss(bare_cmd) if "URL" in name else (0.0, 0, "", 0.0)
                        if "URL" in name:
                            bares.append((bw, bcpu))
                        w, rss, _, cpu = peak_rss(sbs + cmd, root)
                        runs.setdefault(label, []).append((w, rss, cpu, bw))
                for label, root in (trees if "URL" in name else trees[:1])[::-1]:
                    r = runs[label]
                    w = min(x[0] for x in r)
                    ratios = sorted(x[3] / x[0] for x in r)
                    vs = (f"{ratios[-1]:.2f}x (median {ratios[len(ratios) // 2]:.2f}, worst {ratios[0]:.2f})"
                          if "URL" in name else "")
                    rows.append((name + label, f"{w:.2f} s", f"{size / w / 1e6:.0f} MB/s", vs,
                                 f"{min(x[2] for x in r):.2f} s", f"{max(x[1] for x in r) / 2**20:.0f} MiB"))
            bare = min(b[0] for b in bares)
            rows.insert(2, ("bare sequential ranged read (16 MiB GETs)", f"{bare:.2f} s", f"{size / bare / 1e6:.0f} MB/s",
                            f"1.00x (slowest {max(b[0] for b in bares):.2f} s)", f"{min(b[1] for b in bares):.2f} s", ""))
    finally:
        if tmpdir and not a.keep:
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)
    label = os.path.basename(a.file) if a.file else f"{a.model}-{a.weight}"
    link = f", link {a.rate:.0f} MB/s" if a.rate else ", loopback"
    print(f"file: {label}, {size / 1e9:.2f} GB ({size} bytes), {os.cpu_count()} cores{link}")
    print("| run | wall (best) | moved / throughput | vs the bare read run just before | client CPU (best) | peak RSS |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
