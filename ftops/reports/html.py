"""One look for every page: technique colours, labelled axes, and self-contained HTML.

Every page embeds plotly.js once (`include_plotlyjs=True` on its first chart), so a page opens
offline from a file, from an artifact store or from an e-mail attachment.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path

import plotly.graph_objects as go

from ftops.schemas import TECHNIQUES

# One colour per technique on every chart (Plotly's qualitative "Safe" palette: colour-blind safe).
TECHNIQUE_COLORS: dict[str, str] = dict(zip(
    (*TECHNIQUES, "unknown"),
    ("#88CCEE", "#CC6677", "#DDCC77", "#117733", "#332288", "#AA4499", "#888888"),
))
TECHNIQUE_COLORS["unattributed"] = "#BBBBBB"  # cost rows of no job (cost reports)
SEVERITY_COLORS = {"critical": "#CC3311", "warning": "#EE7733", "info": "#0077BB"}


def technique_color(technique: object) -> str:
    return TECHNIQUE_COLORS.get(str(technique) if technique is not None else "unknown", TECHNIQUE_COLORS["unknown"])


def styled(fig: go.Figure, title: str, x_title: str, y_title: str) -> go.Figure:
    """The common layout: a title, axis titles with their units, hover on the x position."""
    fig.update_layout(
        title=title, template="plotly_white", hovermode="x unified", height=380,
        margin={"l": 60, "r": 20, "t": 50, "b": 50}, legend={"orientation": "h", "y": -0.2},
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; gap: 1rem; flex-wrap: wrap; } .figure { font-size: 1.4rem; }
.figure small { display: block; font-size: 0.8rem; color: #666; } .note { color: #666; font-size: 0.85rem; }
"""


class Page:
    """An HTML page assembled section by section; `write` embeds plotly.js with the first chart."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self._parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        if subtitle:
            self._parts.append(f"<p class='note'>{html.escape(subtitle)}</p>")
        self._charts = 0

    def heading(self, text: str) -> Page:
        self._parts.append(f"<h2>{html.escape(text)}</h2>")
        return self

    def text(self, text: str, css: str = "") -> Page:
        cls = f" class='{css}'" if css else ""
        self._parts.append(f"<p{cls}>{html.escape(text)}</p>")
        return self

    def raw(self, markup: str) -> Page:
        """Markup built by the caller (escape what comes from data)."""
        self._parts.append(markup)
        return self

    def figures(self, items: Iterable[tuple[str, str]]) -> Page:
        """Headline numbers: (label, formatted value) pairs."""
        cells = "".join(f"<div class='figure'>{html.escape(v)}<small>{html.escape(k)}</small></div>"
                        for k, v in items)
        self._parts.append(f"<div class='figures'>{cells}</div>")
        return self

    def chart(self, fig: go.Figure) -> Page:
        self._parts.append(fig.to_html(full_html=False, include_plotlyjs=self._charts == 0,
                                       config={"displaylogo": False, "responsive": True}))
        self._charts += 1
        return self

    def table(self, frame, *, links: dict[str, str] | None = None, max_rows: int = 50) -> Page:
        """A DataFrame as an HTML table; `links` maps a column to a column holding each row's href."""
        links = links or {}
        shown = frame.head(max_rows)
        columns = [c for c in shown.columns if c not in set(links.values())]
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        rows = []
        for record in shown.to_dict("records"):
            cells = []
            for c in columns:
                value = record[c]
                numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
                text = _fmt(value)
                href = record.get(links[c]) if c in links else None
                if isinstance(href, str) and href:
                    text = f"<a href='{html.escape(href)}'>{text}</a>"
                cells.append(f"<td class='num'>{text}</td>" if numeric else f"<td>{text}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        more = (f"<p class='note'>{len(frame) - max_rows} more rows in the table beside this page.</p>"
                if len(frame) > max_rows else "")
        body = "".join(rows) if rows else f"<tr><td colspan='{max(len(columns), 1)}'>none</td></tr>"
        self._parts.append(f"<table><tr>{head}</tr>{body}</table>{more}")
        return self

    def render(self) -> str:
        if self._charts == 0:
            # still self-contained and still loading plotly, so every page behaves the same offline
            self.chart(go.Figure())
        return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(self.title)}"
                f"</title><style>{_CSS}</style></head><body>{''.join(self._parts)}</body></html>")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.render(), encoding="utf-8")
        tmp.replace(path)  # a reader never sees half a page
        return path


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return html.escape(str(value))
