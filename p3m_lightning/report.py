"""The PPT benchmark table (the P3M paper's Table 2 layout) from a sweep of ``train.py`` runs.

Train each PPT setting's two trainings (B and N) with several seeds into one sweep folder, then
tabulate it::

    python train.py -m experiment=ppt_b,ppt_n seed=1,2,3 data.root=/path/to/P3M-10k \
        data.normal_train_dir=/path/normal trainer=gpu hydra.sweep.dir=logs/ppt_benchmark/<name>
    python -m p3m_lightning.report logs/ppt_benchmark/<name> [--out DIR]

Two trainings give the four cells: the B training's test metrics are read for B:B and B:N, the
N training's for N:B and N:N. Every column names the test set it was measured on (whole-image
SAD and MSE of the model of the last epoch, the runs' headline): the paper's B:N and N:N are on
the normal version of P3M-500-P, which is not public, so on the public release the ``:N`` cells
are measured on P3M-500-NP, a different test set, and labelled so. The published row only holds
figures of the same test set as its column.

It reads every ``metrics.json`` under the folder (at any depth) and writes into ``--out`` (the
folder itself by default): ``table.md`` and ``table.csv`` (a row per model, mean ± sample
standard deviation over seeds), ``runs.csv`` (one row per run) and ``table.png`` (SAD per
column with the seeds' standard deviation). Runs without a PPT training (``quickstart``) are
skipped with a note.

Every method is a row (``model=<method>`` runs; P3M-Net rows are told apart by encoder), with
the paper's published row of that method above it where the paper has one. Runs of one method
are averaged only when they share a recipe (``metrics.json``'s ``recipe_fingerprint``): a run
that leaves the published recipe gets its own row, labelled with how it leaves it (its
``departures``, e.g. ``GFM [cp=icp]``). Trimap-free
methods (P3M-Net, GFM, MODNet, SHM, LF, HATT, BASIC) fill the Table 2 layout with whole-image
SAD and MSE; trimap-based methods (DIM, AlphaGAN, GCA, IndexNet, FBA) a second table in the
Table 1 layout with SAD and MSE on the trimap's unknown region only (``table1.csv``): the two
kinds of figures are never put in one column.

The command line also writes ``report/index.html`` into ``--out``: one self-contained page with
the tables, the chart, where each figure comes from and a comparison gallery
(``report/gallery/*.png``; `p3m_lightning.report_gallery`, `p3m_lightning.report_html`).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p3m_lightning.report_gallery import DEFAULT_HARDEST, write_gallery
from p3m_lightning.report_html import write_html

COLUMNS: tuple[tuple[str, str], ...] = (
    ("B:B", "P3M-500-P"),
    ("B:N", "P3M-500-NP"),
    ("N:B", "P3M-500-P"),
    ("N:N", "P3M-500-NP"),
    ("B:B", "P3M-500-NP-B"),
    ("N:B", "P3M-500-NP-B"),
)
"""(cell, test set) of each column; the cell's first letter is the training (B or N)."""
METRICS = ("sad", "mse")
FACE_METRICS = ("sad_face", "mse_face")
"""Inside the face mask (journal P3M-Net), on test sets with face masks only."""
PUBLISHED_NAME = "P3M-Net (paper)"
PUBLISHED: dict[tuple[str, str], dict[str, float | None]] = {
    ("B:B", "P3M-500-P"): {"sad": 8.73, "mse": 0.0026},
    ("N:B", "P3M-500-P"): {"sad": 11.22, "mse": 0.0040},
    ("B:N", "P3M-500-NP"): {"sad": 11.23, "mse": None},
}
"""The paper's P3M-Net (ResNet-34) figures that were measured on the column's own test set
(docs/p3m-net.md §1): whole-image SAD and MSE."""
METHOD_NAMES = {
    "p3m_net": "P3M-Net",
    "p3m_swin_t": "P3M-Net (Swin-T)",
    "p3m_vitae_s": "P3M-Net (ViTAE-S)",
    "gfm": "GFM",
    "modnet": "MODNet",
    "shm": "SHM",
    "lf": "LF",
    "hatt": "HATT",
    "basic": "BASIC",
    "dim": "DIM",
    "alphagan": "AlphaGAN",
    "gca": "GCA",
    "indexnet": "IndexNet",
    "fba": "FBA",
}
"""Row names of the methods (``metrics.json``'s ``method``, its model config's name)."""
TRIMAP_BASED = frozenset({"dim", "alphagan", "gca", "indexnet", "fba"})
"""Methods scored in the Table 1 layout: on the trimap's unknown region."""
TRIMAP_METRICS = ("sad_trimap", "mse_trimap")
PUBLISHED_METHODS: dict[str, dict[tuple[str, str], dict[str, float | None]]] = {
    "shm": {("B:B", "P3M-500-P"): {"sad": 21.56, "mse": 0.0100}},
    "lf": {("B:B", "P3M-500-P"): {"sad": 42.95, "mse": 0.0191}},
    "hatt": {("B:B", "P3M-500-P"): {"sad": 25.99, "mse": 0.0054}},
    "gfm": {("B:B", "P3M-500-P"): {"sad": 13.20, "mse": 0.0050}},
    "basic": {("B:B", "P3M-500-P"): {"sad": 15.13, "mse": 0.0058}},
    "dim": {("B:B", "P3M-500-P"): {"sad": 4.8906, "mse": 0.0115}},
    "alphagan": {("B:B", "P3M-500-P"): {"sad": 5.2669, "mse": 0.0112}},
    "gca": {("B:B", "P3M-500-P"): {"sad": 4.3593, "mse": 0.0088}},
    "indexnet": {("B:B", "P3M-500-P"): {"sad": 5.1959, "mse": 0.0156}},
    "fba": {("B:B", "P3M-500-P"): {"sad": 4.1330, "mse": 0.0088}},
}
"""The paper's B:B figures of the other methods on P3M-500-P (Table 2: whole image; Table 1,
the trimap-based ones: unknown region only). P3M-Net's own are ``PUBLISHED``."""
PAPER_ONLY = (
    "The paper's B:N (9.22 / 0.0028) and N:N (9.06 / 0.0028) are on the normal version of "
    "P3M-500-P, which is not public: they have no column here."
)
EXIT_USAGE = 2


class ReportError(Exception):
    """Nothing to tabulate; the message says why."""


@dataclass(frozen=True)
class Run:
    """One trained model's test figures, read from its ``metrics.json``.

    Attributes:
        values: ``(test set, metric) -> value`` of the headline (last-epoch) test metrics.
    """

    model: str
    train: str
    seed: int | None
    init: str
    values: dict[tuple[str, str], float]
    best_on_heldout: bool
    task_name: str
    path: str
    method: str = "p3m_net"
    takes_trimap: bool | None = None
    privacy: str = ""

    @property
    def trimap_based(self) -> bool:
        """Scored in the Table 1 layout (unknown region): the network takes a trimap (runs
        written before ``inputs`` was recorded: by method name)."""
        if self.takes_trimap is not None:
            return self.takes_trimap
        return self.method in TRIMAP_BASED


@dataclass(frozen=True)
class Cell:
    """One model on one column: mean and sample standard deviation (None for one seed)."""

    n: int
    sad_mean: float
    sad_std: float | None
    mse_mean: float
    mse_std: float | None


def column_name(column: tuple[str, str]) -> str:
    """``B:N on P3M-500-NP``: the cell and the test set it was measured on."""
    return f"{column[0]} on {column[1]}"


def model_name(encoder: dict[str, Any]) -> str:
    """A readable model name from the ``encoder`` dict of ``metrics.json``.

    Examples: ``P3M-Net (ResNet-34-mp)`` for ``ResNet34MP``, ``P3M-Net (timm resnet50)`` for a
    ``TimmEncoder`` named ``resnet50``, else the encoder's class name.
    """
    cls = str(encoder.get("_target_", "?")).rsplit(".", 1)[-1]
    if cls == "ResNet34MP":
        return "P3M-Net (ResNet-34-mp)"
    if cls == "TimmEncoder":
        return f"P3M-Net (timm {encoder.get('name', '?')})"
    return f"P3M-Net ({cls})"


def _model_names(encoders: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Names for distinct encoder configs (by canonical JSON), told apart where they'd clash.

    Two configs of one class (say two ``weights_path`` files) get the differing fields
    appended, so that their runs are never averaged together.
    """
    by_name: dict[str, list[str]] = defaultdict(list)
    for key, encoder in encoders.items():
        by_name[model_name(encoder)].append(key)
    names = {}
    for name, keys in by_name.items():
        if len(keys) == 1:
            names[keys[0]] = name
            continue
        fields = sorted({f for k in keys for f in encoders[k]})
        differing = [f for f in fields if len({json.dumps(encoders[k].get(f)) for k in keys}) > 1]
        for key in keys:
            detail = ", ".join(f"{f}={json.dumps(encoders[key].get(f))}" for f in differing)
            names[key] = f"{name} [{detail}]"
    return names


def _training(metrics: dict[str, Any]) -> str | None:
    ppt = metrics.get("ppt") or {}
    train = ppt.get("train") or (ppt.get("setting") or "")[:1] or None
    return train if train in ("B", "N") else None


def _method_order(method: str) -> tuple[int, str]:
    """The paper's order for known methods, then others (stages, your own) by name."""
    order = list(METHOD_NAMES)
    return (order.index(method) if method in order else len(order), method)


PRIVACY_SOURCES = (
    ("mask", "by face mask"),
    ("detector", "by detector"),
    ("person", "by the person fallback"),
    ("head", "by the head fallback"),
    ("skipped", "skipped"),
)
"""``metrics.json`` privacy counts, in the order and words of the report."""


def privacy_text(privacy: dict[str, Any] | None) -> str:
    """A run's ``metrics.json`` ``privacy`` entry in one line: per set obfuscated on the fly,
    its images and how many each source obfuscated (or skipped), and the faces P3M-CP pastes.

    Empty for a run that obfuscated nothing on the fly and pasted nothing.
    """
    if not privacy:
        return ""
    partial = (privacy.get("policy") or {}).get("on_partial")
    parts = []
    for name, counts in (privacy.get("sets") or {}).items():
        found = [f"{counts[key]} {words}" for key, words in PRIVACY_SOURCES if counts.get(key)]
        if partial and partial != "faces" and counts.get("detector"):
            found = [f"{t} (+ {partial})" if t.endswith("by detector") else t for t in found]
        parts.append(f"{name}: {counts.get('images', 0)} images, {', '.join(found) or 'none'}")
    copy_paste = privacy.get("copy_paste")
    if copy_paste:
        layout = (copy_paste.get("source") or {}).get("layout")
        faces = "public celebrity faces" if layout == "celebamask_hq" else "source-folder faces"
        parts.append(f"P3M-CP pastes {faces} unobfuscated into training images (by design)")
    return "; ".join(parts)


def _method(metrics: dict[str, Any]) -> str:
    """The run's method; runs written before methods were recorded are P3M-Net."""
    return str(metrics.get("method") or "p3m_net")


RowKey = tuple[str, str | None, tuple[str, ...]]
"""What a row averages over: (model name, recipe fingerprint, departures)."""


def _row_key(name: str, metrics: dict[str, Any]) -> RowKey:
    return (name, metrics.get("recipe_fingerprint"), tuple(metrics.get("departures") or ()))


def _row_names(keys: set[RowKey]) -> dict[RowKey, str]:
    """A row name per (model name, recipe fingerprint, departures): the model name, with the
    departures from the published recipe in brackets; recipes of the same label are told apart
    by their fingerprint. Runs written before fingerprints were recorded share one row per
    model name."""
    labels = {key: f"{key[0]} [{'; '.join(key[2])}]" if key[2] else key[0] for key in keys}
    counts: dict[str, int] = defaultdict(int)
    for label in labels.values():
        counts[label] += 1
    return {
        key: f"{label} (recipe {key[1]})" if counts[label] > 1 and key[1] else label
        for key, label in labels.items()
    }


def load_runs(root: Path) -> tuple[list[Run], list[str]]:
    """Every PPT run under ``root``, and notes on the files skipped.

    Raises:
        ReportError: ``root`` is not a folder or holds no ``metrics.json``.
    """
    if not root.is_dir():
        raise ReportError(f"{root}: no such folder")
    files = sorted(root.rglob("metrics.json"))
    if not files:
        raise ReportError(
            f"no metrics.json under {root}; train the sweep first: python train.py -m "
            "experiment=ppt_b,ppt_n seed=1,2,3 ..."
        )
    notes: list[str] = []
    loaded: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        rel = path.relative_to(root)
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            notes.append(f"skipped {rel}: unreadable ({err})")
            continue
        if _training(metrics) is None:
            notes.append(f"skipped {rel}: no PPT training (task {metrics.get('task_name')})")
            continue
        loaded.append((rel, metrics))
    encoders = {
        json.dumps(m.get("encoder") or {}, sort_keys=True): m.get("encoder") or {}
        for _, m in loaded
        if _method(m) == "p3m_net"
    }
    names = _model_names(encoders)
    named = []
    for rel, metrics in loaded:
        init = str(metrics.get("init", ""))
        method = _method(metrics)
        if method == "p3m_net":
            name = names[json.dumps(metrics.get("encoder") or {}, sort_keys=True)]
        else:
            name = METHOD_NAMES.get(method, method)
        if init == "scratch" and "recipe_fingerprint" not in metrics:
            name = f"{name} [from scratch]"  # written before departures were recorded
        named.append((rel, name, metrics))
    rows = _row_names({_row_key(name, metrics) for _, name, metrics in named})
    runs = []
    for rel, name, metrics in named:
        after = metrics.get("after") or {}
        values = {
            (test_set, metric): float(after[f"test/{test_set}/{metric}"])
            for _, test_set in COLUMNS
            for metric in (*METRICS, *TRIMAP_METRICS, *FACE_METRICS)
            if f"test/{test_set}/{metric}" in after
        }
        if not values:
            notes.append(f"skipped {rel}: no test/ SAD or MSE in 'after'")
            continue
        init = str(metrics.get("init", ""))
        method = _method(metrics)
        runs.append(
            Run(
                model=rows[_row_key(name, metrics)],
                train=str(_training(metrics)),
                seed=metrics.get("seed"),
                init=init,
                values=values,
                best_on_heldout=metrics.get("after_best_on_heldout") is not None,
                task_name=str(metrics.get("task_name")),
                path=str(rel),
                method=method,
                takes_trimap=("trimap" in metrics["inputs"]) if "inputs" in metrics else None,
                privacy=privacy_text(metrics.get("privacy")),
            )
        )
    return runs, notes


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) >= 2 else None


def summarise(
    runs: Sequence[Run], metrics: tuple[str, str] = METRICS
) -> dict[str, dict[tuple[str, str], Cell]]:
    """Model -> column -> mean and standard deviation over the model's seeds.

    A column's figures come from the runs of its training (the cell's first letter) that were
    tested on its test set. ``metrics`` are the (SAD, MSE) pair read: whole image (Table 2)
    or ``TRIMAP_METRICS``, the unknown region (Table 1).
    """
    sad, mse = metrics
    groups: dict[tuple[str, tuple[str, str]], list[Run]] = defaultdict(list)
    for run in runs:
        for column in COLUMNS:
            if column[0][0] == run.train and (column[1], sad) in run.values:
                groups[(run.model, column)].append(run)
    table: dict[str, dict[tuple[str, str], Cell]] = defaultdict(dict)
    for (model, column), group in sorted(groups.items()):
        sad_mean, sad_std = _mean_std([r.values[(column[1], sad)] for r in group])
        mse_mean, mse_std = _mean_std([r.values[(column[1], mse)] for r in group])
        table[model][column] = Cell(len(group), sad_mean, sad_std, mse_mean, mse_std)
    return dict(table)


def _duplicate_notes(runs: Sequence[Run]) -> list[str]:
    """Notes on runs sharing model, training and seed: trained twice (or sweeps mixed)."""
    seen: dict[tuple[str, str, int | None], list[str]] = defaultdict(list)
    for run in runs:
        seen[(run.model, run.train, run.seed)].append(run.path)
    return [
        f"{len(paths)} runs of {model} trained on {train} with seed {seed} "
        f"({', '.join(paths)}), all averaged; a sweep needs each training once "
        "(experiment=ppt_b,ppt_n)"
        for (model, train, seed), paths in seen.items()
        if len(paths) > 1
    ]


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if metric == "mse" else f"{value:.2f}"


def _cell_text(cell: Cell | None, metric: str, n_max: int) -> str:
    if cell is None:
        return "–"
    mean, std = getattr(cell, f"{metric}_mean"), getattr(cell, f"{metric}_std")
    text = _fmt(mean, metric) if std is None else f"{_fmt(mean, metric)} ± {_fmt(std, metric)}"
    return text if cell.n == n_max else f"{text} (n={cell.n})"


def _published_rows(runs: Sequence[Run], trimap_based: bool) -> list[tuple[str, list[str]]]:
    """The paper's rows for the methods in ``runs`` (P3M-Net's always in Table 2)."""
    rows = []
    if not trimap_based:
        rows.append(
            (
                PUBLISHED_NAME,
                [_fmt(PUBLISHED.get(c, {}).get(m), m) for c in COLUMNS for m in METRICS],
            )
        )
    for method in sorted({r.method for r in runs}, key=_method_order):
        published = PUBLISHED_METHODS.get(method)
        if published is None:
            continue
        cells = [_fmt(published.get(c, {}).get(m), m) for c in COLUMNS for m in METRICS]
        rows.append((f"{METHOD_NAMES[method]} (paper)", cells))
    return rows


def _table_lines(
    table: dict[str, dict[tuple[str, str], Cell]], runs: Sequence[Run], trimap_based: bool
) -> list[str]:
    region = "unknown-region" if trimap_based else ""
    header = ["Model", "Seeds"] + [
        f"{column_name(c)} {region + ' ' if region else ''}{m.upper()}"
        for c in COLUMNS
        for m in METRICS
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---", "---:"] + ["---:"] * (len(header) - 2)) + "|",
    ]
    for name, cells in _published_rows(runs, trimap_based):
        lines.append("| " + " | ".join([name, "–", *cells]) + " |")
    for model, cells in table.items():
        seeds = sorted({r.seed for r in runs if r.model == model}, key=str)
        n_max = max(c.n for c in cells.values())
        values = [_cell_text(cells.get(c), m, n_max) for c in COLUMNS for m in METRICS]
        lines.append("| " + " | ".join([model, ", ".join(map(str, seeds)), *values]) + " |")
    return lines


def to_markdown(table: dict[str, dict[tuple[str, str], Cell]], runs: Sequence[Run]) -> str:
    """The Table 2 layout in Markdown (trimap-free methods): a column per (cell, test set), the
    papers' rows first; then, for trimap-based runs, the Table 1 layout (unknown region)."""
    whole = [r for r in runs if not r.trimap_based]
    trimap = [r for r in runs if r.trimap_based]
    best = sum(r.best_on_heldout for r in runs)
    lines = [
        "# PPT benchmark (P3M-10k, Table 2 layout)",
        "",
        "Whole-image SAD and MSE of the model of the last epoch (each run's headline), on the "
        "test set each column names, mean ± sample standard deviation (ddof=1) over seeds; "
        "lower is better. B:x columns come from the training on blurred images, N:x from the "
        "one on normal images. Columns on different test sets are not comparable with each "
        "other. " + PAPER_ONLY,
        "",
    ]
    if whole:
        lines += _table_lines(
            {m: c for m, c in table.items() if m in {r.model for r in whole}}, whole, False
        )
    else:
        lines.append("(no trimap-free runs)")
    if trimap:
        lines += [
            "",
            "## Trimap-based methods (Table 1 layout)",
            "",
            "SAD and MSE on the trimap's unknown region only (the test sets' own trimaps), "
            "not comparable with the whole-image figures above.",
            "",
            *_table_lines(summarise(trimap, TRIMAP_METRICS), trimap, True),
        ]
    lines += _face_lines(runs)
    lines += _privacy_lines(runs)
    if best:
        lines += [
            "",
            f"{best} run(s) also kept a checkpoint chosen on their held-out training split; "
            "its test figures are `after_best_on_heldout` in metrics.json (not in this table).",
        ]
    return "\n".join(lines) + "\n"


def _face_lines(runs: Sequence[Run]) -> list[str]:
    """A second table of the face-region figures, for the columns whose test set has them."""
    columns = [c for c in COLUMNS if any((c[1], "sad_face") in r.values for r in runs)]
    if not columns:
        return []
    header = ["Model"] + [f"{column_name(c)} {m.upper()}" for c in columns for m in FACE_METRICS]
    lines = [
        "",
        "Inside the face mask (sets with face masks only), mean ± std over seeds:",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for model in sorted({r.model for r in runs}):
        cells = []
        for cell, test_set in columns:
            group = [r for r in runs if r.model == model and r.train == cell[0]]
            for metric in FACE_METRICS:
                values = [
                    r.values[(test_set, metric)] for r in group if (test_set, metric) in r.values
                ]
                if not values:
                    cells.append("–")
                    continue
                mean, std = _mean_std(values)
                kind = "mse" if metric.startswith("mse") else "sad"
                text = _fmt(mean, kind)
                cells.append(text if std is None else f"{text} ± {_fmt(std, kind)}")
        lines.append("| " + " | ".join([model, *cells]) + " |")
    return lines


def _privacy_lines(runs: Sequence[Run]) -> list[str]:
    """Beside the rows: the privacy counts of each row's sets obfuscated on the fly (the
    on-the-fly ``P3M-500-NP-B`` is not a clean blurred twin: the detector and the fallbacks
    decide what is blurred) and the faces P3M-CP pasted; seeds that differ get own lines."""
    notes: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for run in runs:
        if run.privacy:
            notes[(run.model, run.train, run.privacy)].append(str(run.seed))
    if not notes:
        return []
    lines = [
        "",
        "Privacy of the sets obfuscated on the fly (images per source, `metrics.json`):",
        "",
    ]
    for (model, train, text), seeds in sorted(notes.items()):
        lines.append(f"- {model}, {train} training (seeds {', '.join(seeds)}): {text}")
    return lines


def _write_table_csv(
    path: Path, table: dict[str, dict[tuple[str, str], Cell]], runs: Sequence[Run] = ()
) -> None:
    """``table`` as CSV, the papers' rows first. With ``runs`` of trimap-based methods (Table
    1: unknown-region figures, ``table1.csv``), their papers' rows instead of P3M-Net's."""
    keys = [f"{c[0]}@{c[1]}" for c in COLUMNS]
    stats = [(k, m, s) for k in keys for m in METRICS for s in ("mean", "std")]
    fields = ["model"] + [f"{k}_{m}_{s}" for k, m, s in stats] + [f"{k}_n" for k in keys]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        trimap_based = any(r.trimap_based for r in runs)
        published = [] if trimap_based else [(PUBLISHED_NAME, PUBLISHED)]
        published += [
            (f"{METHOD_NAMES[m]} (paper)", PUBLISHED_METHODS[m])
            for m in sorted({r.method for r in runs}, key=_method_order)
            if m in PUBLISHED_METHODS
        ]
        for name, figures in published:
            row: dict[str, Any] = {"model": name}
            for column, key in zip(COLUMNS, keys, strict=True):
                for metric in METRICS:
                    value = figures.get(column, {}).get(metric)
                    row[f"{key}_{metric}_mean"] = "" if value is None else value
            writer.writerow(row)
        for model, cells in table.items():
            row = {"model": model}
            for column, key in zip(COLUMNS, keys, strict=True):
                cell = cells.get(column)
                if cell is None:
                    continue
                row[f"{key}_n"] = cell.n
                for metric in METRICS:
                    for stat in ("mean", "std"):
                        value = getattr(cell, f"{metric}_{stat}")
                        row[f"{key}_{metric}_{stat}"] = "" if value is None else repr(value)
            writer.writerow(row)


def _write_runs_csv(path: Path, runs: Sequence[Run]) -> None:
    sets = sorted({test_set for _, test_set in COLUMNS})
    fields = ["model", "train", "seed", "init", "task_name", "path", "best_on_heldout", "method"]
    fields.append("privacy")
    fields += [f"{s}_{m}" for s in sets for m in (*METRICS, *TRIMAP_METRICS, *FACE_METRICS)]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for run in sorted(runs, key=lambda r: (r.model, r.train, str(r.seed), r.path)):
            row = {f: getattr(run, f) for f in fields[:9]}
            row.update(
                {
                    f"{s}_{m}": run.values.get((s, m), "")
                    for s in sets
                    for m in (*METRICS, *TRIMAP_METRICS, *FACE_METRICS)
                }
            )
            writer.writerow(row)


def plot(table: dict[str, dict[tuple[str, str], Cell]], path: Path) -> None:
    """SAD per column, a bar per model (the paper first), error bars one standard deviation."""
    # The Agg canvas directly, not pyplot: no global backend switch, no GUI.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = [PUBLISHED_NAME, *table]
    width = 0.8 / len(models)
    fig = Figure(figsize=(max(9.0, 1.4 * len(COLUMNS) * len(models) ** 0.5), 5.0))
    fig.set_layout_engine("constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, model in enumerate(models):
        xs, means, errs = [], [], []
        for j, column in enumerate(COLUMNS):
            if model == PUBLISHED_NAME:
                mean, std = PUBLISHED.get(column, {}).get("sad"), None
            elif column in table[model]:
                mean, std = table[model][column].sad_mean, table[model][column].sad_std
            else:
                mean = None
            if mean is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            means.append(mean)
            # NaN draws no error bar: a single seed, or the published numbers.
            errs.append(float("nan") if std is None else std)
        hatch = "//" if model == PUBLISHED_NAME else None
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=model, hatch=hatch)
    ax.set_xticks(range(len(COLUMNS)), [f"{cell}\non {test_set}" for cell, test_set in COLUMNS])
    ax.set_ylabel("whole-image SAD (lower is better)")
    ax.set_title("PPT benchmark: SAD per cell, on the test set named below each group")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(3, len(models)), fontsize="small")
    fig.savefig(path, dpi=120)


def write_report(root: Path, out: Path | None = None) -> dict[str, Any]:
    """Tabulate the runs under ``root`` into ``out`` (default ``root``).

    Returns:
        ``{"table": model -> (cell, test set) -> Cell, "runs": [...], "notes": [...],
        "markdown": str}``.

    Raises:
        ReportError: no ``metrics.json`` under ``root``, or none of a PPT run.
    """
    runs, notes = load_runs(root)
    if not runs:
        raise ReportError(
            f"no PPT runs under {root} (all {len(notes)} metrics.json skipped): "
            + "; ".join(notes[:5])
        )
    notes.extend(_duplicate_notes(runs))
    out = out or root
    out.mkdir(parents=True, exist_ok=True)
    table = summarise([r for r in runs if not r.trimap_based])
    markdown = to_markdown(table, runs)
    (out / "table.md").write_text(markdown)
    _write_table_csv(out / "table.csv", table)
    trimap_runs = [r for r in runs if r.trimap_based]
    if trimap_runs:
        _write_table_csv(out / "table1.csv", summarise(trimap_runs, TRIMAP_METRICS), trimap_runs)
    _write_runs_csv(out / "runs.csv", runs)
    plot(table, out / "table.png")
    return {"table": table, "runs": runs, "notes": notes, "markdown": markdown}


def _names(text: str) -> list[str]:
    """``a,b`` -> ``["a", "b"]`` (image names of ``--images``)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m p3m_lightning.report <sweep dir> [--out DIR] [--images A,B | --hardest N]``;
    returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m p3m_lightning.report",
        description="Tabulate a PPT sweep of train.py (every metrics.json under DIR) as the "
        "paper's Table 2: table.md, table.csv, runs.csv and table.png; and the page "
        "report/index.html with a comparison gallery (report/gallery/*.png).",
    )
    parser.add_argument("dir", type=Path, help="the sweep folder (searched recursively)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: DIR)")
    parser.add_argument(
        "--images",
        type=_names,
        default=None,
        metavar="NAME,NAME",
        help="test images (file stems) shown in the gallery (default: the --hardest)",
    )
    parser.add_argument(
        "--hardest",
        type=int,
        default=DEFAULT_HARDEST,
        metavar="N",
        help="gallery images per test set: the N of highest mean SAD over the runs "
        f"(default {DEFAULT_HARDEST}; 0: no gallery)",
    )
    parser.add_argument(
        "--device", default="cpu", help="where the gallery's mattes are predicted (cpu, cuda)"
    )
    args = parser.parse_args(argv)
    try:
        report = write_report(args.dir, args.out)
    except ReportError as err:
        print(f"report: {err}", file=sys.stderr)
        return EXIT_USAGE
    out = args.out or args.dir
    page_dir = out / "report"
    gallery = write_gallery(
        args.dir,
        report["runs"],
        page_dir / "gallery",
        COLUMNS,
        images=args.images,
        hardest=args.hardest,
        device=args.device,
    )
    notes = [*report["notes"], *gallery.notes]
    page = write_html(
        page_dir / "index.html",
        args.dir.resolve().name,
        report["markdown"],
        report["runs"],
        args.dir,
        [out / "table.png"],
        gallery,
        notes,
    )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(report["markdown"])
    print(f"{len(report['runs'])} runs; wrote table.md, table.csv, runs.csv, table.png to {out}")
    print(f"{len(gallery.figures)} gallery figure(s); the report page is {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
