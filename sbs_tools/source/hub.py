"""``hf://`` URLs: a file on the Hugging Face hub read over plain HTTP(S) ranged requests.

``hf://[datasets/|spaces/]OWNER/REPO[@REVISION]/PATH`` is translated to the hub's documented resolve
URL ``{HF_ENDPOINT}/[datasets/|spaces/]OWNER/REPO/resolve/{REVISION}/{PATH}`` (endpoint
``https://huggingface.co`` unless ``HF_ENDPOINT`` is set, revision ``main`` unless given; a revision
with ``/`` such as ``refs/pr/1`` is written URL-encoded, ``refs%2Fpr%2F1``) and read by the HTTP
backend like any ``https://`` URL, with ``Authorization: Bearer $HF_TOKEN`` when ``HF_TOKEN`` is set.
The hub answers a resolve URL with a redirect to a CDN that honours ``Range``: the first request
follows it, and the ranged reads go straight to where it led (the token is sent only to the hub's
own origin), with the usual ``Range``, size and ETag checks there.

Chosen over huggingface_hub's ``HfFileSystem``: no extra dependency beyond the HTTP path's
(``fsspec`` + ``aiohttp``), and fewer requests — ``HfFileSystem`` asks the hub's API for the file's
metadata and resolves again for each read, where this makes one ``HEAD`` and then only ranged GETs.
"""
from __future__ import annotations

import os
import re
from urllib.parse import quote, unquote

from ..inputs import InputError
from .settings import same_origin

_HF = re.compile(r"^hf://(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/@]+/[^/@]+)(?:@(?P<rev>[^/]+))?/(?P<path>.+)$")
DEFAULT_ENDPOINT = "https://huggingface.co"


def is_hub(url: str) -> bool:
    return url.startswith("hf://")


def resolve_url(url: str) -> str:
    """The hub's resolve URL for ``hf://...`` (see the module docstring)."""
    m = _HF.match(url)
    if m is None or m["path"].endswith("/"):
        raise InputError(f"{url}: not a file on the Hugging Face hub (hf://[datasets/]OWNER/REPO[@REVISION]/PATH)",
                         code="not-found")
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    kind = f"{m['kind']}/" if m["kind"] else ""
    rev = quote(unquote(m["rev"] or "main"), safe="")
    return f"{endpoint}/{kind}{m['repo']}/resolve/{rev}/{quote(m['path'], safe='/')}"


def auth_headers(target: str, url: str) -> dict[str, str]:
    """``Authorization`` for a request to ``url`` when it goes to the hub's origin (that of the resolve
    URL ``target``) and ``HF_TOKEN`` is set; nothing for the CDN a resolve URL redirects to."""
    token = os.environ.get("HF_TOKEN")
    if not token or not same_origin(url, target):
        return {}
    return {"Authorization": f"Bearer {token}"}
