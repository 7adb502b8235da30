"""The report's page: one self-contained HTML file per sweep (``report/index.html``).

It needs no server and no network: no external stylesheet, script or font; the charts are
inlined as ``data:`` URIs and the gallery PNGs are files next to the page, referenced by relative
paths, so the ``report/`` folder can be copied or zipped as it is. The page shows the report's
tables (``table.md``: the Table 2 layout, the Table 1 layout for trimap-based methods, the face
region), the charts, the comparison gallery (`p3m_lightning.report_gallery`) and, for every run
behind a figure, its test sets, the region its figures cover and its recipe with sources and
departures (``metrics.json``'s ``recipe`` and ``departures``; "not recorded" where a run has
none).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from p3m_lightning.report_gallery import Gallery

BANNER_COLOR = "#1f3a5f"
"""Background of the title banner at the top of the page."""
BANNER_HEIGHT = 64
NOT_RECORDED = "not recorded"
STYLE = f"""
body {{ margin: 0; font-family: system-ui, -apple-system, "Segoe UI", sans-serif;
  color: #1a1a1a; background: #ffffff; }}
header {{ background: {BANNER_COLOR}; color: #ffffff; height: {BANNER_HEIGHT}px;
  box-sizing: border-box; padding: 14px 20px; }}
header h1 {{ margin: 0; font-size: 22px; font-weight: 600; }}
main {{ padding: 8px 20px 40px; }}
h2 {{ font-size: 18px; margin: 28px 0 8px; }}
h3 {{ font-size: 15px; margin: 20px 0 6px; }}
p, li {{ font-size: 13px; line-height: 1.45; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 12px; margin: 8px 0 16px; }}
th, td {{ border: 1px solid #c8ced8; padding: 3px 6px; vertical-align: top; }}
th {{ background: #e8edf5; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
tr.paper td {{ font-style: italic; background: #f6f7f9; }}
img {{ max-width: 100%; height: auto; border: 1px solid #c8ced8; }}
figure {{ margin: 12px 0 24px; }}
figcaption {{ font-size: 13px; margin-bottom: 6px; }}
code {{ font-size: 12px; }}
"""


class HtmlRun(Protocol):
    """What the page shows of a run of the report."""

    model: str
    train: str
    seed: int | None
    path: str
    values: dict[tuple[str, str], float]

    @property
    def trimap_based(self) -> bool:
        """Scored on the trimap's unknown region (Table 1 layout)."""
        ...


def _inline(text: str) -> str:
    """Escaped text with Markdown ``code`` spans as <code>."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(
        f"<code>{html.escape(part)}</code>" if i % 2 else html.escape(part)
        for i, part in enumerate(parts)
    )


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(lines: Sequence[str]) -> list[str]:
    """A Markdown pipe table (header, alignment row, rows) as HTML."""
    header, align, *rows = lines
    right = [cell.endswith(":") and not cell.startswith(":") for cell in _cells(align)]
    out = ["<table>", "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in _cells(header)) + "</tr>"]
    for line in rows:
        cells = _cells(line)
        paper = ' class="paper"' if cells and cells[0].endswith("(paper)") else ""
        kinds = [' class="num"' if i < len(right) and right[i] else "" for i in range(len(cells))]
        tds = "".join(f"<td{k}>{_inline(c)}</td>" for k, c in zip(kinds, cells, strict=True))
        out.append(f"<tr{paper}>{tds}</tr>")
    out.append("</table>")
    return out


def markdown_to_html(markdown: str) -> str:
    """The subset of Markdown the report writes (headings, paragraphs, pipe tables) as HTML.

    A ``#`` heading becomes ``<h2>`` and ``##`` ``<h3>``: the page's own title is the ``<h1>``.
    """
    out: list[str] = []
    paragraph: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if table:
            out.extend(_table(table))
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            if paragraph:
                flush()
            table.append(line)
            continue
        if table:
            flush()
        heading = re.match(r"(#{1,3}) (.*)", line)
        if heading:
            flush()
            level = len(heading.group(1)) + 1
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif not line.strip():
            flush()
        else:
            paragraph.append(line.strip())
    flush()
    return "\n".join(out)


def describe(value: Any) -> str:
    """A recorded value in words: lists joined by ``;``, mappings as ``key: value``."""
    if value is None:
        return NOT_RECORDED
    if isinstance(value, dict):
        return "; ".join(f"{k}: {describe(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple):
        return "; ".join(describe(v) for v in value) or "none"
    return str(value)


def _recipe(root: Path, run: HtmlRun) -> tuple[str, str, str]:
    """The run's recipe, its sources and its departures, from its ``metrics.json``."""
    try:
        metrics = json.loads((root / run.path).read_text())
    except (OSError, json.JSONDecodeError):
        return NOT_RECORDED, NOT_RECORDED, NOT_RECORDED
    recipe = metrics.get("recipe")
    if not isinstance(recipe, dict):
        return describe(recipe), NOT_RECORDED, NOT_RECORDED
    rest = {k: v for k, v in recipe.items() if k not in ("sources", "departures")}
    # train.py writes them beside the recipe (top-level ``departures``); older files inside it.
    leaves = metrics["departures"] if "departures" in metrics else recipe.get("departures")
    return (
        describe(rest) if rest else NOT_RECORDED,
        describe(recipe.get("sources")),
        describe(leaves),
    )


def _region(run: HtmlRun) -> str:
    region = "unknown region (trimap)" if run.trimap_based else "whole image"
    faces = sorted({s for s, m in run.values if m == "sad_face"})
    return region + (f"; face region on {', '.join(faces)}" if faces else "")


def provenance_table(root: Path, runs: Sequence[HtmlRun]) -> str:
    """A row per run: model, training, seed, folder, test sets, region, recipe, sources,
    departures."""
    header = ["Model", "Training", "Seed", "Run", "Test sets", "Region", "Recipe", "Sources"]
    header.append("Departures")
    rows = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    for run in sorted(runs, key=lambda r: (r.model, r.train, str(r.seed), r.path)):
        test_sets = ", ".join(sorted({s for s, _ in run.values}))
        cells = [
            run.model,
            run.train,
            "–" if run.seed is None else str(run.seed),
            str(Path(run.path).parent),
            test_sets,
            _region(run),
            *_recipe(root, run),
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _gallery_section(gallery: Gallery, page_dir: Path) -> str:
    out = ["<h2>Gallery</h2>"]
    if not gallery.figures:
        out.append("<p>No gallery: see the notes below.</p>")
        return "\n".join(out)
    privacy = gallery.privacy
    if privacy is not None and privacy.allow_unobfuscated:
        shown = "shown unobfuscated: every run sets privacy.allow_unobfuscated=true"
    elif privacy is not None:
        shown = (
            f"face-obfuscated ({privacy.method}) as the runs' image panels are: inside the set's "
            "face masks, else around the faces the detector finds"
            + (f" ({privacy.detector})" if privacy.use_detector else " (detector off)")
            + f", else by the fallback on_no_face={privacy.on_no_face}"
        )
    else:
        shown = "face-obfuscated"
    out.append(
        f"<p>Images: {html.escape(gallery.choice)}. Columns: the photo ({html.escape(shown)}), "
        "the true alpha, then per model (its lowest seed) the matte predicted again from its "
        "last checkpoint on its own test data, captioned with its whole-image SAD and MSE, and "
        "the error |pred - true| (inferno: black is exact).</p>"
    )
    for figure in gallery.figures:
        src = Path(os.path.relpath(figure.path, page_dir)).as_posix()
        sources = ", ".join(f"{k} × {v}" for k, v in sorted(figure.photo_sources.items()))
        caption = (
            f"<h3>{html.escape(figure.cell)} on {html.escape(figure.test_set)}</h3>"
            f"Images: {html.escape(', '.join(figure.images))}. Photos' face regions: "
            f"{html.escape(sources)}."
        )
        alt = f"{figure.cell} on {figure.test_set}: " + ", ".join(figure.methods)
        out.append(
            f'<figure><figcaption>{caption}</figcaption><img src="{html.escape(src)}" '
            f'alt="{html.escape(alt)}"></figure>'
        )
    return "\n".join(out)


def write_html(
    path: Path,
    title: str,
    markdown: str,
    runs: Sequence[HtmlRun],
    root: Path,
    charts: Sequence[Path],
    gallery: Gallery,
    notes: Sequence[str] = (),
) -> Path:
    """Write the page.

    Args:
        path: the HTML file; gallery PNGs must lie under its folder.
        title: the sweep's name, in the banner.
        markdown: the report's ``table.md``.
        runs: the report's runs (``metrics.json`` paths relative to ``root``).
        root: the sweep folder.
        charts: PNG charts, inlined in this order (missing ones are skipped).
        gallery: what ``write_gallery`` wrote.
        notes: the report's notes, listed at the end.

    Returns:
        ``path``.
    """
    charts_html = "\n".join(
        f'<figure><img src="{_data_uri(chart)}" alt="{html.escape(chart.name)}"></figure>'
        for chart in charts
        if chart.is_file()
    )
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes) or "<li>none</li>"
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}: PPT benchmark report</title>
<style>{STYLE}</style>
</head>
<body>
<header><h1>{html.escape(title)}: PPT benchmark report</h1></header>
<main>
{markdown_to_html(markdown)}
<h2>Charts</h2>
{charts_html or "<p>No charts.</p>"}
{_gallery_section(gallery, path.parent)}
<h2>Where each figure comes from</h2>
<p>Every run behind the tables: the test sets it was scored on, the region its figures cover
and the recipe it ran, with its sources and its departures from them.</p>
{provenance_table(root, runs)}
<h2>Notes</h2>
<ul>{notes_html}</ul>
</main>
</body>
</html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
