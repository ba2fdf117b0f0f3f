"""Everything in a file as plain data (``sbs dump``), plus per-tensor values and statistics."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from .blobstore import BLOB_ALIGN, round_up
from .sbsfile import SbsFile
from .toc import expected_blob_bytes


def dump(f: SbsFile) -> dict[str, Any]:
    """Headers, directory, full config tree, toc records as stored, tokenizer and problems."""
    d = f.directory
    out: dict[str, Any] = f.metadata()
    out["header"] = {"magic": f"{d.header.magic:#010x}", "num_blobs": d.header.num_blobs,
                     "file_bytes": d.header.file_bytes, "offset": d.header.offset}
    if d.front_header is not None:
        out["front_header"] = {"magic": f"{d.front_header.magic:#010x}", "num_blobs": d.front_header.num_blobs,
                               "file_bytes": d.front_header.file_bytes}
    out["directory_offset"] = d.dir_offset
    out["blobs"] = [{"index": e.index, "key": e.key, "offset": e.offset, "bytes": e.size,
                     "padded_end": round_up(e.offset + e.size, BLOB_ALIGN)} for e in d.entries]
    if f.config is not None:
        out["config_stored"] = {"missing_fields": f.config.missing_fields, "extra_u32": f.config.extra_u32}
    out["toc"] = [{**{k: v for k, v in asdict(r).items()}, "type_name": r.type_name,
                   "expected_bytes": expected_blob_bytes(r),
                   "blob_bytes": f.blobs[r.name].size if r.name in f.blobs else None} for r in f.toc]
    return out


def tensor_stats(values: np.ndarray) -> dict[str, Any]:
    """min/max/mean/std over finite values, plus zero and non-finite counts."""
    v = values.reshape(-1)
    finite = np.isfinite(v)
    nonfinite = int(v.size - np.count_nonzero(finite))
    fv = v if nonfinite == 0 else v[finite]
    stats: dict[str, Any] = {"count": int(v.size), "zeros": int(v.size - np.count_nonzero(v)),
                             "non_finite": nonfinite}
    if fv.size:
        stats.update({"min": float(fv.min()), "max": float(fv.max()), "mean": float(fv.mean(dtype=np.float64)),
                      "std": float(fv.std(dtype=np.float64))})
    if nonfinite:
        stats["first_non_finite"] = int(np.flatnonzero(~finite)[0])
    return stats


def tensor_report(f: SbsFile, name: str, values: int = 8, stats: bool = False,
                  raw: bool = False) -> dict[str, Any]:
    """Shape, type and the first ``values`` elements of one tensor (decoded, or raw bytes)."""
    info = f.tensors.get(name)
    if info is None:
        from .errors import TensorError

        raise TensorError(f"no tensor named {name!r} (see `sbs dump` for the list)", code="no-such-tensor",
                          tensor=name)
    rep: dict[str, Any] = info.to_dict()
    if raw:
        rep["raw_first_bytes"] = f.tensor(name, decode=False)[:max(values, 0)].tolist()
    else:
        decoded = f.tensor(name)
        rep["values"] = decoded.reshape(-1)[:max(values, 0)].tolist()
        if stats:
            rep["stats"] = tensor_stats(decoded)
    return rep
