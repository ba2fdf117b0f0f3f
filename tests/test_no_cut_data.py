"""Text output never cuts data: full names when piped, folded (never ellipsized) names in a terminal."""
from __future__ import annotations

import io

import pytest
from rich.console import Console

import sbs_tools
from sbs_tools.cli import cmd_diff, cmd_dump, cmd_inspect, main

from .conftest import CORPUS

VIT = CORPUS / "v2" / "gemma3-4b-vit-tiny-sfp.sbs"
A, B = CORPUS / "v2" / "gemma2-2b-tiny-sfp.sbs", CORPUS / "v2" / "gemma2-2b-tiny-bf16.sbs"


def _names(path) -> set[str]:
    with sbs_tools.open(path) as f:
        return set(f.tensors) | {e.key for e in f.directory.entries}


@pytest.mark.parametrize("argv, path", [(["dump", str(VIT)], VIT), (["diff", str(A), str(B)], A),
                                        (["inspect", str(VIT)], None)])
def test_piped_output_is_complete(capsys, monkeypatch, argv, path):
    monkeypatch.setenv("COLUMNS", "30")  # a narrow terminal setting must not matter when not a terminal
    main(argv)
    out = capsys.readouterr().out
    assert "…" not in out
    words = set(out.replace("│", " ").replace("┃", " ").split())
    if path is not None:
        changed = {n for n in _names(path) if n not in ("config", "toc", "tokenizer")}
        if argv[0] == "diff":
            changed = {"att_ein_0", "qkv_ein_0", "gating_ein_0", "linear_w_0", "att_ein_1", "qkv_ein_1",
                       "gating_ein_1", "linear_w_1"}
        assert changed <= words


@pytest.mark.parametrize("module, argv", [(cmd_dump, ["dump", str(VIT)]), (cmd_diff, ["diff", str(A), str(B)]),
                                          (cmd_inspect, ["inspect", str(VIT)])])
def test_terminal_folds_instead_of_cutting(capsys, monkeypatch, module, argv):
    buf = io.StringIO()
    monkeypatch.setattr(module, "console", Console(file=buf, width=40, force_terminal=True, color_system=None))
    main(argv)
    assert "…" not in buf.getvalue()


def test_piped_inspect_has_no_trailing_blanks(capsys):
    """Piped text is for grep/diff: the label column is aligned, but no line is padded to the widest one."""
    main(["inspect", str(VIT)])
    lines = capsys.readouterr().out.splitlines()
    assert [ln for ln in lines if ln != ln.rstrip()] == []
    rows = [ln for ln in lines if ln.startswith(("model ", "size ", "tokenizer "))]
    assert len(rows) == 3 and len({ln.index(ln.split()[1]) for ln in rows}) == 1  # values start in one column
