"""``sbs inspect FILE``: what is in the file, on one screen."""
from __future__ import annotations

import typer

from .common import ALLOW_FULL_DOWNLOAD_HELP, app, console, human_bytes, inputs_arg, print_json, with_transfer


@app.command()
def inspect(
    file: str = typer.Argument(..., metavar="FILE", help="The .sbs file, or its URL (https://, s3://, ...)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of the summary."),
    allow_full_download: bool = typer.Option(False, "--allow-full-download", help=ALLOW_FULL_DOWNLOAD_HELP),
) -> None:
    """Summarize a .sbs file: model, layout, layers by type, weight types, tokenizer."""
    import sbs_tools
    from sbs_tools.summary import summarize

    file = inputs_arg(file, allow_full_download)
    with sbs_tools.open(file) as f:
        if json_out:
            data = f.metadata()
            data["summary"] = summarize(f)
            print_json(with_transfer(data, [file]))
            return
        s = summarize(f)
    _render(s)


def _render(s: dict) -> None:
    from rich.markup import escape  # file-derived text (path, display name, keys in messages) is not markup

    title = s.get("specifier") or s["era"]
    console.print(f"[bold]{escape(s['path'])}[/]  [cyan]{escape(title)}[/]")
    t = _Rows()
    if "model" in s:
        t.add_row("model", escape(f"{s['model']} ({s['family']}), display name {s['display_name']!r}"))
        t.add_row("weights", f"{s['weight']}, wrapping {s['wrapping']}, config schema {s['schema_revision']}")
    if "deduced" in s:
        d = s["deduced"]
        guess = (f"assumes {d['model']} ({d['basis']}), weights {d['weight'] or 'unknown'}" if d["model"] != "UNKNOWN"
                 else f"deduces no model ({d['basis']}) and aborts")
        t.add_row("model", escape(f"no config: gemma.cpp {d['generation']} {guess}; `sbs verify` says what each "
                                  "generation does"))
    t.add_row("container", f"{s['layout'].upper()} layout, {s['format']} ({s['era_description']})")
    t.add_row("size", f"{human_bytes(s['file_bytes'])} ({s['file_bytes']} bytes), {s['num_blobs']} blobs, "
                      f"{s['num_tensors']} tensors")
    if "model" in s:
        layers = ", ".join(f"{n} {k}" for k, n in s["layers_by_type"].items()) or "none"
        vit = ", ".join(f"{n} {k}" for k, n in s["vit_layers_by_type"].items()) or "none"
        t.add_row("layers", f"{s['num_layers']} text ({layers}); ViT: {vit}")
        dims = f"D={s['model_dim']} vocab={s['vocab_size']} max_seq_len={s['max_seq_len']}"
        if "heads" in s:
            dims += (f" heads={s['heads']} kv_heads={s['kv_heads']} qkv_dim={s['qkv_dim']} "
                     f"ff={s['ff_hidden_dim']}")
        t.add_row("dims", dims)
        if s.get("vit"):
            v = s["vit"]
            t.add_row("vision", f"D={v['model_dim']} seq_len={v['seq_len']} patch={v['patch_width']} "
                                f"image={v['image_size']}px")
        if s["global_layers"]:
            t.add_row("global layers", ", ".join(map(str, s["global_layers"])))
    total = max(s["tensor_bytes"], 1)
    hist = "  ".join(f"{k} {human_bytes(b)} ({100 * b / total:.0f}%, {s['tensors_by_type'][k]} tensors)"
                     for k, b in s["bytes_by_type"].items())
    t.add_row("types", hist or "no tensors")
    tok = s["tokenizer"]
    t.add_row("tokenizer", f"present, {human_bytes(tok['bytes'])}" if tok["present"] else "[yellow]absent[/]")
    t.print()
    for note in s.get("notes", []):
        console.print(f"[blue]note[/] {escape(note)}")
    for p in s["problems"]:
        color = {"error": "red", "warning": "yellow"}.get(p["severity"], "blue")
        console.print(f"[{color}]{p['severity']}[/] {escape(p['code'])}: {escape(p['message'])}")


class _Rows:
    """Label/value rows: a folding grid on a terminal, plain aligned lines (no trailing blanks) in a pipe."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def add_row(self, label: str, value: str) -> None:
        self.rows.append((label, value))

    def print(self) -> None:
        if console.is_terminal:
            from rich.table import Table  # only a terminal needs the folding grid

            t = Table.grid(padding=(0, 2))
            t.add_column(style="bold", no_wrap=True)
            t.add_column(overflow="fold")
            for label, value in self.rows:
                t.add_row(label, value)
            console.print(t)
            return
        width = max((len(label) for label, _ in self.rows), default=0)
        for label, value in self.rows:
            console.print(f"[bold]{label.ljust(width)}[/]  {value}")
