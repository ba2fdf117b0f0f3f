"""Offline checks of a rendered page: a tiny DOM, and every way it could reach the network.

Used by the tests (on the page as written and on the DOM headless Chromium
dumps after the scripts ran) and available to anyone who post-processes a
report: :func:`external_references` lists each attribute, CSS rule or script
call that could fetch something; a report must have none.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Callable, Iterator

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
                  "wbr", "param"})
#: Attributes whose value is a URL the browser may load (or navigate to).
URL_ATTRS = frozenset({"src", "href", "xlink:href", "srcset", "poster", "action", "formaction", "data",
                       "background", "manifest", "ping", "codebase", "archive", "longdesc", "lowsrc", "imagesrcset"})
#: Elements that only exist to load something.
LOADING_TAGS = frozenset({"link", "iframe", "frame", "object", "embed", "base", "audio", "video", "source", "track",
                          "portal"})
_CSS_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.I)
_CSS_IMPORT = re.compile(r"@import\b", re.I)
_JS_NET = re.compile(r"\b(fetch\s*\(|XMLHttpRequest|WebSocket|EventSource|sendBeacon|importScripts|"
                     r"import\s*\(|new\s+Image\b|\.src\s*=|location\s*=|window\.open\s*\()")


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parent: "Node | None" = None
    children: list["Node"] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def iter(self) -> Iterator["Node"]:
        yield self
        for c in self.children:
            yield from c.iter()

    def find_all(self, pred: Callable[["Node"], bool]) -> list["Node"]:
        return [n for n in self.iter() if pred(n)]

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def ancestors(self) -> Iterator["Node"]:
        p = self.parent
        while p is not None:
            yield p
            p = p.parent

    def all_text(self) -> str:
        return "".join("".join(n.text) for n in self.iter())

    def by_id(self, id_: str) -> "Node | None":
        for n in self.iter():
            if n.attrs.get("id") == id_:
                return n
        return None


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.cur = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.cur)
        self.cur.children.append(node)

    def handle_endtag(self, tag: str) -> None:
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data: str) -> None:
        self.cur.text.append(data)


def parse(html_text: str) -> Node:
    """A forgiving DOM of ``html_text`` (good enough for Chromium's serialized output and our pages)."""
    b = _Builder()
    b.feed(html_text)
    b.close()
    return b.root


def _local(url: str) -> bool:
    u = url.strip()
    return u.startswith("#") or u.lower().startswith("data:") or u == ""


def external_references(html_text: str) -> list[str]:
    """Everything in the page that could make the browser fetch or navigate off the page (empty = self-contained)."""
    root = parse(html_text)
    out: list[str] = []
    for n in root.iter():
        if n.tag in LOADING_TAGS:
            out.append(f"<{n.tag}> element")
        if n.tag == "meta" and n.attrs.get("http-equiv", "").lower() == "refresh":
            out.append("<meta http-equiv=refresh>")
        for k, v in n.attrs.items():
            if k in URL_ATTRS and not _local(v):
                out.append(f"<{n.tag} {k}={v!r}>")
            if k == "style":
                out += [f"<{n.tag} style> url({m.group(2)})" for m in _CSS_URL.finditer(v) if not _local(m.group(2))]
        if n.tag == "style":
            css = "".join(n.text)
            out += [f"<style> url({m.group(2)})" for m in _CSS_URL.finditer(css) if not _local(m.group(2))]
            if _CSS_IMPORT.search(css):
                out.append("<style> @import")
        if n.tag == "script":
            if "src" in n.attrs:
                continue  # reported above
            js = "".join(n.text)
            out += [f"<script> {m.group(0)}" for m in _JS_NET.finditer(js)]
    return out


def csp(html_text: str) -> str | None:
    """The page's Content-Security-Policy meta, if any."""
    for n in parse(html_text).iter():
        if n.tag == "meta" and n.attrs.get("http-equiv", "").lower() == "content-security-policy":
            return n.attrs.get("content")
    return None
