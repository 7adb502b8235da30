"""The report page's HTML: the report's Markdown as HTML, escaped, and recorded values in words."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from p3m_lightning.report_gallery import Gallery
from p3m_lightning.report_html import describe, markdown_to_html, write_html

MARKDOWN = """# PPT benchmark (Table 2 layout)

Whole-image SAD, `after` figures;
lower is better.

| Model | Seeds | B:B on P3M-500-P SAD |
|:---|---:|---:|
| P3M-Net (paper) | – | 8.73 |
| <b>Mine</b> & co | 1, 2 | 9.10 ± 0.20 |

## Trimap-based methods (Table 1 layout)
"""


def test_markdown_tables_headings_and_paragraphs_become_html() -> None:
    page = markdown_to_html(MARKDOWN)
    assert "<h2>PPT benchmark (Table 2 layout)</h2>" in page
    assert "<h3>Trimap-based methods (Table 1 layout)</h3>" in page
    assert "<p>Whole-image SAD, <code>after</code> figures; lower is better.</p>" in page
    (table,) = re.findall(r"<table>.*?</table>", page, flags=re.S)
    assert re.findall(r"<th>([^<]*)</th>", table) == ["Model", "Seeds", "B:B on P3M-500-P SAD"]
    rows = re.findall(r"<tr( class=\"paper\")?>(.*?)</tr>", table)[1:]
    assert [bool(paper) for paper, _ in rows] == [True, False]
    # Right-aligned columns are numbers; text is escaped, never markup.
    assert rows[1][1] == (
        "<td>&lt;b&gt;Mine&lt;/b&gt; &amp; co</td>"
        '<td class="num">1, 2</td><td class="num">9.10 ± 0.20</td>'
    )


def test_recorded_values_in_words() -> None:
    assert describe(None) == "not recorded"
    assert describe([]) == "none"
    assert describe(["paper §4", {"repo": "train.py", "commit": "abc"}]) == (
        "paper §4; repo: train.py; commit: abc"
    )


def test_page_escapes_run_values_and_names_missing_recipes(tmp_path: Path) -> None:
    run_dir = tmp_path / "sweep" / "0"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text('{"recipe": {"sources": ["<script>x</script>"]}}')
    run = SimpleNamespace(
        model="<img src=x>",
        train="B",
        seed=None,
        path="0/metrics.json",
        values={("P3M-500-P", "sad"): 1.0, ("P3M-500-P", "sad_face"): 0.1},
        trimap_based=False,
    )
    page = write_html(
        tmp_path / "report" / "index.html",
        "sweep",
        MARKDOWN,
        [run],
        tmp_path / "sweep",
        [tmp_path / "absent.png"],
        Gallery(notes=["gallery: none"]),
        ["a <note>"],
    ).read_text()
    assert "<script>" not in page and "<img src=x>" not in page
    assert "&lt;img src=x&gt;" in page and "&lt;script&gt;x&lt;/script&gt;" in page
    row = re.findall(r"<tr><td>&lt;img.*?</tr>", page)[0]
    assert re.findall(r"<td>([^<]*)</td>", row)[4:] == [
        "P3M-500-P",
        "whole image; face region on P3M-500-P",
        "not recorded",
        "&lt;script&gt;x&lt;/script&gt;",
        "not recorded",
    ]
    assert "<p>No charts.</p>" in page and "<li>a &lt;note&gt;</li>" in page
