"""``sbs run FILE --prompt TEXT``: generate with the numpy decoder in ``inference/``."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from .common import app, err_console, exclusive, requires, usage_error


def _parse_ids(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(" ", ",").split(",") if t.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated token ids, got {text!r}", param_hint="--tokens")
    if not ids:
        raise typer.BadParameter("no token ids given", param_hint="--tokens")
    return ids


def _rate(n: float, seconds: float) -> str:
    return f"{n / seconds:.1f} tokens/s" if seconds > 0 else "n/a"


@app.command()
def run(
    file: Path = typer.Argument(..., metavar="FILE", help="The .sbs file."),
    prompt: str = typer.Option(None, "--prompt", "-p", help="Text prompt (tokenized with the file's own "
                                                               "tokenizer; BOS is prepended, no chat template)."),
    tokens: str = typer.Option(None, "--tokens", help="Prompt as token ids, e.g. 2,651,1234 (used as given); "
                                                      "the output is printed as ids too."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n", min=0, help="Tokens to generate at most."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", min=0.0, help="0 = greedy."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Sample among the K most likely tokens (0 = all)."),
    seed: int = typer.Option(None, "--seed", help="Seed for sampling (reproducible output)."),
    rope: str = typer.Option("gemmacpp", "--rope", help="RoPE bases: 'gemmacpp' (as gemma.cpp 3ed403e: the "
                                                        "270M uses 10,000 on every layer) or 'reference' "
                                                        "(1e6 on all Gemma 3 global layers)."),
    numerics: str = typer.Option("gemmacpp", "--numerics", help="'gemmacpp' (bf16-rounded weights, I8 halves "
                                                                "re-quantized) or 'f32' (decoded values as is)."),
    image: Path = typer.Option(None, "--image", help="An image (PPM; PNG, JPEG, ... with Pillow) for a Gemma 3 "
                                                     "or PaliGemma file: the prompt is wrapped as gemma.cpp does "
                                                     "and the image tokens take their places in it."),
    max_memory: str = typer.Option(None, "--max-memory", help="Memory budget, e.g. 4G: resident float32 weights "
                                                              "if they fit, else streaming (default: half the "
                                                              "available memory)."),
    streaming: bool = typer.Option(False, "--streaming", help="Decode each layer when the forward pass reaches it."),
    resident: bool = typer.Option(False, "--resident", help="Decode every weight once, at load."),
) -> None:
    """Generate from a prompt and stream the text; ends with prompt and generation speed."""
    import inference
    from sbs_tools.errors import SbsError

    if (prompt is None) == (tokens is None):
        usage_error("give exactly one of --prompt and --tokens")
    requires("top_k", top_k > 0, "temperature", temperature > 0)
    requires("seed", seed is not None, "temperature", temperature > 0)
    requires("image", image is not None, "prompt", prompt is not None)
    if rope not in inference.ROPE_MODES:
        raise typer.BadParameter(f"must be one of {', '.join(inference.ROPE_MODES)}", param_hint="--rope")
    if numerics not in inference.NUMERICS:
        raise typer.BadParameter(f"must be one of {', '.join(inference.NUMERICS)}", param_hint="--numerics")
    ids = _parse_ids(tokens) if tokens is not None else None
    exclusive(streaming=streaming, resident=resident)
    try:
        budget = inference.parse_size(max_memory) if max_memory is not None else None
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--max-memory")

    def log(message: str) -> None:
        err_console.print(message, style="dim", highlight=False, markup=False, soft_wrap=True)

    mode = "streaming" if streaming else "resident" if resident else "auto"
    model = inference.load(file, rope=rope, numerics=numerics, images=image is not None, mode=mode,
                           max_memory=budget, progress=True, log=log)
    rows = None
    if ids is None:
        if model.tokenizer is None:
            raise SbsError(f"{file}: the file carries no tokenizer; pass token ids with --tokens",
                           code="no-tokenizer")
        ids = model.tokenizer.encode(prompt) if image is None else model.wrap(prompt, image=image)
    if image is not None:
        try:
            rows = model.image_tokens(image)
        except (OSError, ValueError, ImportError) as e:
            raise SbsError(f"{image}: cannot use the image: {e}", code="bad-image") from None
    bad = [t for t in ids if not 0 <= t < model.vocab_size and not (rows is not None and t == -2)]
    if bad:
        raise SbsError(f"token id {bad[0]} is outside the vocabulary (0..{model.vocab_size - 1})", code="bad-token")
    if len(ids) >= model.config.max_seq_len:
        raise SbsError(f"the prompt has {len(ids)} tokens; the model's max_seq_len is {model.config.max_seq_len}",
                       code="prompt-too-long")

    out = sys.stdout
    count = 0
    if tokens is not None:
        for count, t in enumerate(model.stream(ids, max_new_tokens, temperature, top_k, seed), 1):
            out.write(("," if count > 1 else "") + str(t))
            out.flush()
    else:
        decoder = inference.tokenizer.StreamDecoder(model.tokenizer, [t for t in ids if t >= 0])
        for count, t in enumerate(model.stream(ids, max_new_tokens, temperature, top_k, seed, image=rows), 1):
            out.write(decoder.push(t))
            out.flush()
    out.write("\n")
    out.flush()
    s = model.stats
    err_console.print(
        f"prompt: {s['prompt_tokens']} tokens in {s['prompt_seconds']:.3f} s "
        f"({_rate(s['prompt_tokens'], s['prompt_seconds'])}); "
        f"generation: {count} tokens in {s['decode_seconds']:.3f} s "
        f"({_rate(s['decode_tokens'], s['decode_seconds'])})",
        highlight=False, markup=False, soft_wrap=True)
