"""sbs export: decoded/raw safetensors and npz with config metadata; chunked decoding of every type."""
from __future__ import annotations

import json

import numpy as np
import pytest

import sbs_tools
from sbs_tools.cli import main
from sbs_tools.export import ExportError, decoded, export, iter_values, load_export

from .conftest import CLEAN_CORPUS, CORPUS


@pytest.mark.parametrize("path", CLEAN_CORPUS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_chunked_decoding_equals_whole_tensor(path):
    """iter_values in tiny chunks (whole NUQ/I8 groups) == SbsFile.tensor for every tensor of every type."""
    with sbs_tools.open(path) as f:
        for name in f.tensors:
            whole = f.tensor(name).reshape(-1)
            parts = np.concatenate(list(iter_values(f, name, chunk_values=256)))
            np.testing.assert_array_equal(parts, whole, err_msg=name)
            np.testing.assert_array_equal(decoded(f, name), f.tensor(name))


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_decoded_export(tmp_path, fmt):
    src = CORPUS / "v2/gemma3-1b-tiny-sfp.sbs"
    res = export(src, tmp_path / f"x.{fmt}")
    assert res.kind == "decoded" and res.format == fmt
    meta, arrays = load_export(tmp_path / f"x.{fmt}")
    assert meta["format"] == "sbs-export" and meta["kind"] == "decoded"
    assert meta["specifier"] == "gemma3-1b-sfp"
    cfg = json.loads(meta["config"])
    assert cfg["model"] == "GEMMA3_1B" and cfg["num_layers"] == 6
    toc = {t["name"]: t for t in json.loads(meta["toc"])}
    with sbs_tools.open(src) as f:
        assert json.loads(meta["config_u32"]) == f.config.to_words()
        assert set(arrays) == set(f.tensors) | {"__tokenizer__"}
        for name in f.tensors:
            assert arrays[name].dtype == np.float32 and arrays[name].shape == (f.tensors[name].rows,
                                                                                f.tensors[name].cols)
            np.testing.assert_array_equal(arrays[name], f.tensor(name))  # scale applied
            assert toc[name]["type"] == f.tensors[name].type_name and toc[name]["scale"] == f.tensors[name].scale
        assert arrays["__tokenizer__"].tobytes() == f.tokenizer_bytes
    assert toc["linear_w_0"]["scale"] == pytest.approx(1.6)


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_raw_export(tmp_path, fmt):
    src = CORPUS / "v2/gemma2-2b-tiny-nuq.sbs"
    export(src, tmp_path / f"r.{fmt}", raw=True, tokenizer=False)
    meta, arrays = load_export(tmp_path / f"r.{fmt}")
    assert meta["kind"] == "raw" and "__tokenizer__" not in arrays
    with sbs_tools.open(src) as f:
        for name, info in f.tensors.items():
            assert arrays[name].dtype == np.uint8
            assert arrays[name].tobytes() == f.raw(info.key).tobytes()
        assert arrays["__config__"].tobytes() == f.raw("config").tobytes()
        assert arrays["__toc__"].tobytes() == f.raw("toc").tobytes()


def test_safetensors_export_loads_with_the_safetensors_package(tmp_path):
    stn = pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    src = CORPUS / "v2/gemma2-2b-tiny-i8.sbs"
    export(src, tmp_path / "x.safetensors")
    arrays = load_file(str(tmp_path / "x.safetensors"))
    with stn.safe_open(str(tmp_path / "x.safetensors"), framework="numpy") as fh:
        meta = fh.metadata()
    assert meta["specifier"] == "gemma2-2b-i8-it"
    with sbs_tools.open(src) as f:
        np.testing.assert_array_equal(arrays["att_ein_1"], f.tensor("att_ein_1"))


def test_cli_export(tmp_path, capsys):
    src = CORPUS / "v2/gemma2-2b-tiny-bf16.sbs"
    assert main(["export", str(src), str(tmp_path / "a.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tensors"] == 18 and out["kind"] == "decoded"
    assert main(["export", str(src), str(tmp_path / "a.bin")]) == 2
    assert "bad-arguments" in capsys.readouterr().err
    assert main(["export", str(src), str(tmp_path / "h"), "--hf", "--raw"]) == 2
    assert main(["export", str(src), str(tmp_path / "h"), "--hf"]) == 0
    assert (tmp_path / "h" / "config.json").exists() and (tmp_path / "h" / "tokenizer.model").exists()
    # a second export into the now non-empty directory needs --force, and then replaces only what it
    # writes: the tokenizer of the first export stays (nothing is ever deleted)
    before = (tmp_path / "h" / "config.json").read_bytes()
    assert main(["export", str(src), str(tmp_path / "h"), "--hf", "--no-tokenizer"]) == 2
    assert "output-not-empty" in capsys.readouterr().err
    assert main(["export", str(src), str(tmp_path / "h"), "--hf", "--no-tokenizer", "--force"]) == 0
    assert (tmp_path / "h" / "tokenizer.model").exists() and (tmp_path / "h" / "config.json").read_bytes() == before


def test_export_errors(tmp_path):
    with pytest.raises(ExportError):
        export(CORPUS / "v2/gemma2-2b-tiny-bf16.sbs", tmp_path / "x.txt")
    assert not list(tmp_path.iterdir())


def test_truncated_tensor_is_reported(tmp_path):
    """A toc claiming more bytes than the blob holds: an SbsError naming the tensor, no partial output."""
    from sbs_tools.toc import TocRecord
    from sbs_tools.writer import write_model

    with sbs_tools.open(CORPUS / "v2/gemma2-2b-tiny-bf16.sbs") as f:
        cfg = f.config
        tensors = [(TocRecord.make(n, i.type, i.rows, i.cols, i.scale), f.raw(n).tobytes()) for n, i in
                   f.tensors.items()]
    rec, data = tensors[0]
    tensors[0] = (rec, data[:len(data) // 2])
    write_model(tmp_path / "bad.sbs", cfg, tensors)
    with pytest.raises(sbs_tools.SbsError) as e:
        export(tmp_path / "bad.sbs", tmp_path / "o.npz")
    assert e.value.tensor == "c_embedding"
    assert not (tmp_path / "o.npz").exists()
