"""A strict CLI: conflicting, meaningless or invalid flags are usage errors (one line, exit 2), and every
command answers -h."""
from __future__ import annotations

import pytest

from sbs_tools.cli import main

from .conftest import CORPUS

F = str(CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs")
G = str(CORPUS / "v2" / "gemma2-2b-tiny-bf16.sbs")

CASES = [
    ("dump json+markdown", ["dump", F, "--json", "--markdown"], "--json and --markdown"),
    ("dump markdown+tensor", ["dump", F, "--markdown", "-t", "att_ein_0"], "--markdown and --tensor"),
    ("dump stats+raw", ["dump", F, "-t", "att_ein_0", "--stats", "--raw"], "--stats and --raw"),
    ("dump values without tensor", ["dump", F, "--values", "4"], "--values only applies"),
    ("dump stats without tensor", ["dump", F, "--stats"], "--stats only applies"),
    ("dump raw without tensor", ["dump", F, "--raw"], "--raw only applies"),
    ("dump negative values", ["dump", F, "-t", "att_ein_0", "--values", "-3"], "--values"),
    ("repair backup without in-place", ["repair", F, "-o", "X.sbs", "--backup", ".bak"], "--backup only applies"),
    ("repair in-place without backup", ["repair", F, "--in-place"], "--in-place only applies"),
    ("repair output and in-place", ["repair", F, "-o", "X.sbs", "--in-place", "--backup", ".b"],
     "--output and --in-place"),
    ("repair config-from and model", ["repair", F, "-o", "X.sbs", "--config-from", G, "--model", "gemma2-2b-sfp"],
     "--config-from and --model"),
    ("repair dry-run and force", ["repair", F, "--dry-run", "--force"], "--dry-run and --force"),
    ("repair force without output", ["repair", F, "--in-place", "--backup", ".b", "--force"], "--force only"),
    ("repair no output", ["repair", F], "-o OUT.sbs"),
    ("repair unknown target", ["repair", F, "-o", "X.sbs", "--target", "1999"], "--target"),
    ("repair unknown layout", ["repair", F, "-o", "X.sbs", "--layout", "v3"], "--layout"),
    ("repair unknown duplicate rule", ["repair", F, "-o", "X.sbs", "--drop-duplicates", "middle"],
     "--drop-duplicates"),
    ("hash quiet without check", ["hash", F, "--quiet"], "--quiet only applies"),
    ("hash check and files", ["hash", "--check", F, G], "--check and FILE"),
    ("hash check and per", ["hash", "--check", F, "--per", "blob"], "--check and --per"),
    ("hash unknown per", ["hash", F, "--per", "layer"], "--per"),
    ("hash unknown algo", ["hash", F, "--algo", "md5"], "--algo"),
    ("hash nothing", ["hash"], "give one or more files"),
    ("export raw and hf", ["export", F, "OUT", "--raw", "--hf"], "--raw and --hf"),
    ("convert unknown type", ["convert", F, "X.sbs", "--type", "q9"], "--type"),
    ("convert unknown layout", ["convert", F, "X.sbs", "--layout", "v3"], "--layout"),
    ("convert unknown wrapping", ["convert", F, "X.sbs", "--wrapping", "chat"], "--wrapping"),
    ("diff no-values and atol", ["diff", F, G, "--no-values", "--atol", "1"], "--no-values and --atol"),
    ("diff no-values and rtol", ["diff", F, G, "--no-values", "--rtol", "1"], "--no-values and --rtol"),
    ("diff negative atol", ["diff", F, G, "--atol", "-1"], "--atol"),
    ("run prompt and tokens", ["run", F, "--tokens", "2", "--prompt", "x"], "exactly one of --prompt"),
    ("run neither", ["run", F], "exactly one of --prompt"),
    ("run top-k when greedy", ["run", F, "--tokens", "2", "--top-k", "3"], "--top-k only applies"),
    ("run seed when greedy", ["run", F, "--tokens", "2", "--seed", "3"], "--seed only applies"),
    ("run bad tokens", ["run", F, "--tokens", "2,x"], "--tokens"),
    ("run unknown rope", ["run", F, "--tokens", "2", "--rope", "bogus"], "--rope"),
    ("verify force without junit", ["verify", F, "--force"], "--force only applies"),
    ("verify no files", ["verify"], "Missing argument"),
    ("report three files", ["report", F, G, F], "one file, or two"),
    ("report force to stdout", ["report", F, "-o", "-", "--force"], "--force does not apply"),
    ("unknown option", ["inspect", F, "--bogus"], "No such option"),
    ("unknown command", ["frobnicate"], "No such command"),
]


@pytest.mark.parametrize("argv, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_usage_error(tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert err.startswith("error: [usage] ") and err.count("\n") == 1, err
    assert needle in err
    assert list(tmp_path.iterdir()) == []  # nothing was written


COMMANDS = ["inspect", "dump", "verify", "repair", "run", "convert", "export", "hash", "diff", "report"]


@pytest.mark.parametrize("command", COMMANDS)
def test_short_help(capsys, command):
    assert main([command, "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: sbs {command} ")


def test_choices_are_shown(capsys):
    assert main(["convert", "-h"]) == 0
    assert "f32|bf16|sfp|nuq|i8" in capsys.readouterr().out
    assert main(["repair", "-h"]) == 0
    assert "2025-07-31" in capsys.readouterr().out


def test_completion_is_available(capsys):
    assert main(["--help"]) == 0
    assert "--install-completion" in capsys.readouterr().out


def test_target_choices_match_the_repair_targets():
    from sbs_tools.cli.cmd_repair import TARGET_CHOICES
    from sbs_tools.repair.targets import ALIASES, TARGETS

    assert set(TARGETS) <= set(TARGET_CHOICES)
    assert all(c in TARGETS or c == "auto" or ALIASES.get(c) in TARGETS for c in TARGET_CHOICES)
