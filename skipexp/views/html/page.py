"""The frame of a report.html and the pieces its pages are made of: sections, tables, facts, images.

A page is one file that needs nothing else: the stylesheet, the script and every figure are inside it,
and its Content-Security-Policy forbids the browser to fetch anything (images must be ``data:`` URIs),
so it works from disk, offline, attached to an e-mail. Links to the folder's CSVs and sub-reports are
relative: they work where the page sits in its folder, and are plain text elsewhere.
"""
from __future__ import annotations

import base64
import math
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from skipexp.rundir import files
from skipexp.views.html import assets
from skipexp.views.html.svg import colour_class

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


@dataclass
class Toggle:
    """A chip on the page's bar: switches off every element whose ``data-keys`` holds ``key``."""
    key: str
    label: str
    colour: int = -1


@dataclass
class Page:
    title: str
    kind: str                       # run | comparison | sweep
    status: str | None = None
    subtitle: str = ""
    toggles: list[tuple[str, list[Toggle]]] = field(default_factory=list)   # (group name, chips)
    sections: list[str] = field(default_factory=list)
    version: str = ""

    def add(self, title: str, body: str, ident: str = "") -> None:
        self.sections.append(section(title, body, ident))

    def html(self) -> str:
        badge = f' <span class="badge {status_class(self.status)}">{escape(self.status)}</span>' if self.status else ""
        bar = "".join(_chips(name, chips) for name, chips in self.toggles if chips)
        if bar:
            bar += '<button class="chip all" type="button">show all</button>'
        bar += '<button id="theme" type="button">theme: auto</button>'
        return (
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta name="generator" content="skipexp {escape(self.version)}">'
            f"<title>{escape(self.title)} · skipexp {escape(self.kind)}</title><style>{assets.CSS}</style></head>"
            f'<body><main><header><div><div class="muted">skipexp {escape(self.kind)} report</div>'
            f"<h1>{escape(self.title)}{badge}</h1><div class=\"muted\">{self.subtitle}</div></div></header>"
            f'<div class="bar">{bar}</div>{"".join(self.sections)}'
            f"<footer>Written by skipexp {escape(self.version)} on {datetime.now():%Y-%m-%d %H:%M} from the files of "
            "this folder; <code>skipexp report</code> writes it again. Hover a chart to read its values; the chips "
            "above switch lines and rows off and on (shift-click: only that one).</footer>"
            f"</main><script>{assets.JS}</script></body></html>\n")


def _chips(name: str, chips: list[Toggle]) -> str:
    out = [f'<span class="chips" role="group" aria-label="{escape(name)}"><b>{escape(name)}</b>']
    for c in chips:
        sw = f'<span class="sw {colour_class(c.colour)}"></span>' if c.colour >= 0 else ""
        out.append(f'<button class="chip" type="button" data-key="{escape(c.key)}" aria-pressed="true">'
                   f"{sw}{escape(c.label)}</button>")
    return "".join(out) + "</span>"


def status_class(status: str | None) -> str:
    """The CSS class of a status word (``2 completed, 1 diverged`` is mixed)."""
    word = (status or "").strip()
    return word.replace(" ", "-") if word in ("completed", "diverged", "interrupted", "failed", "crashed",
                                             "running", *files.NOT_RUN) else "mixed"


def attr(name: str, text: str | None) -> str:
    """`` name="text"`` (escaped), or nothing for an empty text."""
    return f' {name}="{escape(text)}"' if text else ""


def section(title: str, body: str, ident: str = "") -> str:
    return f"<section{attr('id', ident)}><h2>{escape(title)}</h2>{body}</section>"


def para(text: str, cls: str = "") -> str:
    return f"<p{attr('class', cls)}>{text}</p>"


def cell(text: str, *, num: bool = False, field: str | None = None, value: Any = None, cls: str = "",
         title: str = "") -> str:
    """A table cell; ``field`` and ``value`` go into data attributes (the value exactly, for scripts and tests)."""
    attrs = []
    classes = " ".join(c for c in (("n" if num else ""), cls) if c)
    if classes:
        attrs.append(f'class="{classes}"')
    if field is not None:
        attrs.append(f'data-field="{escape(field)}"')
    if value is not None:
        attrs.append(f'data-value="{escape(_exact(value))}"')
    if title:
        attrs.append(f'title="{escape(title)}"')
    return f"<td{' ' + ' '.join(attrs) if attrs else ''}>{text}</td>"


def _exact(v: Any) -> str:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    return str(v)


def table(head: Sequence[str], rows: Iterable[Sequence[str] | tuple[str, Sequence[str]]], *, cls: str = "",
          numeric: Sequence[bool] | None = None, ident: str = "") -> str:
    """A table; ``head`` is text, each row cells already made by :func:`cell` (or text, escaped here), or
    ``(data-keys, cells)`` for a row that the toggles switch."""
    ths = "".join(f"<th{attr('class', 'n' if numeric and numeric[i] else '')}>{h}</th>" for i, h in enumerate(head))
    body = []
    for row in rows:
        keys = None
        if isinstance(row, tuple) and len(row) == 2 and isinstance(row[0], str) and not isinstance(row[1], str):
            keys, row = row
        tds = "".join(c if c.startswith("<td") else f"<td>{escape(c)}</td>" for c in row)
        keys_attr = f' data-keys="{escape(keys)}"' if keys is not None else ""
        body.append(f"<tr{keys_attr}>{tds}</tr>")
    return (f'<div class="scroll"><table{attr("class", cls)}{attr("id", ident)}><thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def split(left: str, right: str) -> str:
    """Two columns side by side (one under the other on a narrow screen)."""
    return f'<div class="split"><div>{left}</div><div>{right}</div></div>'


def facts(pairs: Iterable[tuple[str, str | None]]) -> str:
    """A definition list of (name, html) pairs; pairs without a value are left out."""
    items = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in pairs if v not in (None, ""))
    return f'<dl class="kv">{items}</dl>'


def details(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{escape(summary)}</summary>{body}</details>"


def links(items: Iterable[tuple[str, str]], base: Path | None = None) -> str:
    """A list of relative links (href, text); with ``base``, only those whose file exists under it."""
    lis = [f'<li><a href="{escape(href)}">{escape(text)}</a></li>' for href, text in items
           if base is None or (base / href).exists()]
    return f'<ul class="links">{"".join(lis)}</ul>' if lis else ""


def image(path: Path, caption: str, alt: str) -> str:
    """A PNG of the folder inlined as a data: URI, with its caption and a link to the file."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure class="img"><img src="data:image/png;base64,{data}" alt="{escape(alt)}" loading="eager">'
            f"<figcaption>{caption}</figcaption></figure>")


def command_line(argv: Any) -> str:
    """A command as the shell would take it back, from meta.json's list (or a string as it is)."""
    if isinstance(argv, list):
        words = [str(a) for a in argv]
        if words and words[0].endswith("/skipexp"):
            words[0] = "skipexp"
        return " ".join(shlex.quote(w) for w in words)
    return str(argv or "")


def code(text: str) -> str:
    return f"<code>{escape(text)}</code>"
