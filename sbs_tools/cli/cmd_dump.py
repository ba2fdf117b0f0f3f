"""``sbs dump FILE``: everything in the file — directory, config tree, toc — or one tensor."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from .common import ALLOW_FULL_DOWNLOAD_HELP, app, console, exclusive, inputs_arg, print_json, requires, with_transfer


@app.command()
def dump(
    file: str = typer.Argument(..., metavar="FILE", help="The .sbs file, or its URL."),
    json_out: bool = typer.Option(False, "--json", help="One JSON document."),
    markdown: bool = typer.Option(False, "--markdown", help="Markdown tables (for issues and docs)."),
    tensor: Optional[str] = typer.Option(None, "--tensor", "-t", metavar="NAME", help="Show one tensor instead."),
    values: Optional[int] = typer.Option(None, "--values", "-n", min=0, metavar="N",
                                         help="With --tensor: how many leading elements [default: 8]."),
    stats: bool = typer.Option(False, "--stats", help="With --tensor: min/max/mean/std/zeros/non-finite."),
    raw: bool = typer.Option(False, "--raw", help="With --tensor: the packed bytes, not decoded values."),
    allow_full_download: bool = typer.Option(False, "--allow-full-download", help=ALLOW_FULL_DOWNLOAD_HELP),
) -> None:
    """Dump headers, the blob directory, the full config and the toc (or one tensor's values)."""
    import sbs_tools
    from sbs_tools.dump import dump as dump_data, tensor_report

    exclusive(json=json_out, markdown=markdown)
    exclusive(markdown=markdown, tensor=tensor is not None)
    exclusive(stats=stats, raw=raw)
    for flag, given in (("values", values is not None), ("stats", stats), ("raw", raw)):
        requires(flag, given, "tensor", tensor is not None)
    values = 8 if values is None else values
    file = inputs_arg(file, allow_full_download)

    with sbs_tools.open(file) as f:
        if tensor is not None:
            rep = tensor_report(f, tensor, values=values, stats=stats, raw=raw)
            if json_out:
                print_json(with_transfer(rep, [file]))
            else:
                _render_tensor(rep, markdown)
            return
        data = dump_data(f)
    if json_out:
        print_json(with_transfer(data, [file]))
    elif markdown:
        print(to_markdown(data))
    else:
        _render(data)


def _render_tensor(rep: dict[str, Any], markdown: bool) -> None:
    lines = [f"{rep['name']}: {rep['type']} {rep['rows']} x {rep['cols']}, scale {rep['scale']:g}, "
             f"{rep['bytes']} bytes at offset {rep['offset']}"]
    if "values" in rep:
        lines.append("values: " + " ".join(f"{v:.6g}" for v in rep["values"]))
    if "raw_first_bytes" in rep:
        lines.append("raw bytes: " + " ".join(f"{b:02x}" for b in rep["raw_first_bytes"]))
    if "stats" in rep:
        s = rep["stats"]
        lines.append(" ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()))
    print("\n".join(lines))


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


LAYER_COLS = ["model_dim", "ff_hidden_dim", "heads", "kv_heads", "qkv_dim", "type", "post_norm", "use_qk_norm",
              "ff_biases", "post_qk", "activation", "optimized_gating"]


def _config_scalars(cfg: dict[str, Any]) -> list[list[Any]]:
    return [[k, v] for k, v in cfg.items() if not isinstance(v, (list, dict))] + [
        ["attention_window_sizes", cfg["attention_window_sizes"]],
        ["scale_base_names", " ".join(cfg["scale_base_names"])]]


def _sections(data: dict[str, Any]):
    """(title, headers, rows) for every table of the dump, shared by both renderers."""
    h = data["header"]
    yield "Container", ["field", "value"], [
        ["path", data["path"]], ["file_bytes", data["file_bytes"]], ["layout", data["layout"]],
        ["format", data["format"]], ["era", data["era"]], ["magic", h["magic"]], ["num_blobs", h["num_blobs"]],
        ["header file_bytes", h["file_bytes"]], ["header offset", h["offset"]],
        ["directory offset", data["directory_offset"]],
        ["tokenizer", f"{data['tokenizer']['bytes']} bytes" if data["tokenizer"]["present"] else "absent"]]
    yield "Directory", ["#", "key", "offset", "bytes", "padded end"], [
        [b["index"], b["key"], b["offset"], b["bytes"], b["padded_end"]] for b in data["blobs"]]
    cfg = data.get("config")
    if cfg:
        yield "Config", ["field", "value"], _config_scalars(cfg)
        yield "Layers", ["#"] + LAYER_COLS, [[i] + [lc[c] for c in LAYER_COLS]
                                            for i, lc in enumerate(cfg["layer_configs"])]
        vit = cfg["vit_config"]
        yield "VitConfig", ["field", "value"], [[k, v] for k, v in vit.items() if k != "layer_configs"]
        if vit["layer_configs"]:
            yield "ViT layers", ["#"] + LAYER_COLS, [[i] + [lc[c] for c in LAYER_COLS]
                                                    for i, lc in enumerate(vit["layer_configs"])]
    if data["toc"]:
        yield "Toc", ["name", "type", "rows", "cols", "scale", "elem bytes", "num_elements", "stride",
                      "blob bytes", "expected"], [
            [r["name"], r["type_name"], r["rows"], r["cols"], f"{r['scale']:g}", r["element_bytes"],
             r["num_elements"], r["stride"], r["blob_bytes"], r["expected_bytes"]] for r in data["toc"]]
    else:
        yield "Tensors", ["name", "type", "rows", "cols", "scale", "bytes", "offset"], [
            [t["name"], t["type"], t["rows"], t["cols"], f"{t['scale']:g}", t["bytes"], t["offset"]]
            for t in data["tensors"]]
    if data["problems"]:
        yield "Problems", ["severity", "code", "message"], [[p["severity"], p["code"], p["message"]]
                                                           for p in data["problems"]]


def to_markdown(data: dict[str, Any]) -> str:
    parts = [f"# {data['path']}"]
    for title, headers, rows in _sections(data):
        parts.append(f"## {title}\n\n{_md_table(headers, rows)}")
    return "\n\n".join(parts) + "\n"


def _render(data: dict[str, Any]) -> None:
    from rich.table import Table  # only the text output needs it

    for title, headers, rows in _sections(data):
        t = Table(title=title, title_justify="left", title_style="bold")
        for hname in headers:
            t.add_column(hname, overflow="fold")
        for r in rows:
            t.add_row(*(escape(str(c)) for c in r))  # keys, names and messages come from the file
        console.print(t)
