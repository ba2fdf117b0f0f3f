"""`sbs run` end to end on tiny corpus models, with each file's own tokenizer."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import inference
from sbs_tools.cli import main

from .conftest import CORPUS

G2 = CORPUS / "v2" / "gemma2-2b-tiny-bf16.sbs"
G3 = CORPUS / "v2" / "gemma3-1b-tiny-sfp.sbs"
VIT = CORPUS / "v2" / "gemma3-4b-vit-tiny-bf16.sbs"
SPEED = re.compile(r"prompt: (\d+) tokens in [\d.]+ s \(([\d.]+ tokens/s|n/a)\); "
                   r"generation: (\d+) tokens in [\d.]+ s \(([\d.]+ tokens/s|n/a)\)")


def run(capsys, *args):
    rc = main(list(map(str, args)))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_run_prompt_streams_text_with_the_files_tokenizer(capsys):
    rc, out, err = run(capsys, "run", G3, "--prompt", "hello world", "--max-new-tokens", "12")
    assert rc == 0, err
    m = inference.load(G3, progress=False)
    prompt = m.tokenizer.encode("hello world")
    assert prompt[0] == 2  # BOS prepended
    new = m.generate(prompt, 12)
    assert out == m.tokenizer.decode(prompt + new)[len("hello world"):] + "\n"
    speed = SPEED.search(err)
    assert speed and int(speed.group(1)) == len(prompt) and int(speed.group(3)) == len(new)
    assert "MiB" in err  # memory use reported at load


def test_run_tokens_prints_ids_and_matches_gemmacpp(capsys):
    g = json.loads(G2.with_suffix(".json").read_text())["inference"]["generate"]
    want = [c["argmax"] for c in g["sample_calls"]]
    ids = ",".join(map(str, g["prompt"]))
    rc, out, err = run(capsys, "run", G2, "--tokens", ids, "-n", len(want))
    assert rc == 0, err
    assert out.strip() == ",".join(map(str, want))
    assert SPEED.search(err)


def test_run_sampling_is_reproducible_with_a_seed(capsys):
    args = ("run", G3, "--tokens", "2,10,20", "-n", "10", "--temperature", "1.0", "--top-k", "20")
    outs = [run(capsys, *args, "--seed", s)[1] for s in (5, 5, 6)]
    assert outs[0] == outs[1] != outs[2]


def test_run_vit_file_notes_skipped_layers(capsys):
    rc, out, err = run(capsys, "run", VIT, "--prompt", "hello", "-n", "3")
    assert rc == 0 and "ViT layers" in err and "text-only" in err


def test_run_rope_option(capsys):
    rc, out, _ = run(capsys, "run", G3, "--tokens", "2,10", "-n", "2", "--rope", "reference")
    assert rc == 0 and out.strip()
    rc, _, err = run(capsys, "run", G3, "--tokens", "2,10", "--rope", "llama")
    assert rc == 2 and "--rope" in err


@pytest.mark.parametrize("args, text", [
    ((), "exactly one of --prompt and --tokens"),
    (("--prompt", "a", "--tokens", "2"), "exactly one of --prompt and --tokens"),
    (("--tokens", "2,x"), "comma-separated token ids"),
    (("--tokens", "2,100000"), "outside the vocabulary"),
    (("--tokens", ",".join(["2"] * 200)), "max_seq_len is 128"),
])
def test_run_usage_errors(capsys, args, text):
    rc, _, err = run(capsys, "run", G2, *args)
    assert rc == 2 and text in " ".join(err.split()).replace("│ ", "")


def test_run_unreadable_file(capsys, tmp_path):
    rc, _, err = run(capsys, "run", tmp_path / "missing.sbs", "--tokens", "2")
    assert rc == 2 and "error" in err


def test_run_through_the_installed_script():
    r = subprocess.run([sys.executable, "-m", "sbs_tools", "run", str(G2), "--tokens", "2,10,20,30,40", "-n", "3"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "40,40,40" and SPEED.search(r.stderr)
