"""The PPT benchmark table (the P3M paper's Table 2 layout) from a sweep of ``train.py`` runs.

Train every PPT setting with several seeds into one sweep folder, then tabulate it::

    python train.py -m experiment=ppt_bb,ppt_bn,ppt_nb,ppt_nn seed=1,2,3 \
        data.root=/path/to/P3M-10k trainer=gpu hydra.sweep.dir=logs/ppt_benchmark/<name>
    python -m p3m_lightning.report logs/ppt_benchmark/<name> [--out DIR]

It reads every ``metrics.json`` under the folder (at any depth) and writes into ``--out`` (the
folder itself by default):

- ``table.md`` and ``table.csv``: a row per model (named from its encoder), SAD and MSE of the
  trained model on each setting's headline test set (B:B and N:B: P3M-500-P; B:N and N:N:
  P3M-500-NP), mean ± sample standard deviation over seeds, with the published P3M-Net row for
  reference;
- ``runs.csv``: one row per run (model, setting, seed and its numbers);
- ``table.png``: SAD per setting as grouped bars with the seeds' standard deviation.

Runs without a PPT setting (``experiment=quickstart``) are skipped with a note.
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

SETTINGS = ("B:B", "B:N", "N:B", "N:N")
METRICS = ("sad", "mse")
PUBLISHED_NAME = "P3M-Net (published, P3M-500-P/NP)"
PUBLISHED: dict[str, dict[str, float]] = {
    "B:B": {"sad": 8.73, "mse": 0.0026},
    "B:N": {"sad": 9.22, "mse": 0.0028},
    "N:B": {"sad": 11.22, "mse": 0.0040},
    "N:N": {"sad": 9.06, "mse": 0.0028},
}
"""P3M-Net's PPT numbers in the paper (P3M_SPEC), SAD and MSE on P3M-500-P (B:B, N:B) and
P3M-500-NP (B:N, N:N)."""
EXIT_USAGE = 2


class ReportError(Exception):
    """Nothing to tabulate; the message says why."""


@dataclass(frozen=True)
class Run:
    """One trained model's headline numbers, read from its ``metrics.json``."""

    model: str
    setting: str
    seed: int | None
    test_set: str
    source: str
    sad: float
    mse: float
    task_name: str
    path: str


@dataclass(frozen=True)
class Cell:
    """One model on one setting: mean and sample standard deviation (None for one seed)."""

    n: int
    sad_mean: float
    sad_std: float | None
    mse_mean: float
    mse_std: float | None


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

    Two configs of one class (say ``pretrained`` true and false) get the differing fields
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


def _headline(after: dict[str, float], test_set: str) -> tuple[str, float, float] | None:
    """``(source, sad, mse)`` of the test metrics, else the validation ones, else None."""
    for source in ("test", "val"):
        keys = [f"{source}/{test_set}/{metric}" for metric in METRICS]
        if all(key in after for key in keys):
            return source, float(after[keys[0]]), float(after[keys[1]])
    return None


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
            "experiment=ppt_bb,ppt_bn,ppt_nb,ppt_nn seed=1,2,3 ..."
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
        ppt = metrics.get("ppt")
        if not ppt:
            notes.append(f"skipped {rel}: no PPT setting (task {metrics.get('task_name')})")
            continue
        loaded.append((rel, metrics))
    encoders = {
        json.dumps(m.get("encoder") or {}, sort_keys=True): m.get("encoder") or {}
        for _, m in loaded
    }
    names = _model_names(encoders)
    runs = []
    for rel, metrics in loaded:
        ppt = metrics["ppt"]
        test_set = ppt["headline_test_set"]
        headline = _headline(metrics.get("after") or {}, test_set)
        if headline is None:
            notes.append(f"skipped {rel}: no test/ or val/ {test_set} SAD and MSE in 'after'")
            continue
        source, sad, mse = headline
        runs.append(
            Run(
                model=names[json.dumps(metrics.get("encoder") or {}, sort_keys=True)],
                setting=ppt["setting"],
                seed=metrics.get("seed"),
                test_set=test_set,
                source=source,
                sad=sad,
                mse=mse,
                task_name=str(metrics.get("task_name")),
                path=str(rel),
            )
        )
    return runs, notes


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) >= 2 else None


def summarise(runs: Sequence[Run]) -> dict[str, dict[str, Cell]]:
    """Model -> setting -> mean and standard deviation over the model's seeds."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.model, run.setting)].append(run)
    table: dict[str, dict[str, Cell]] = defaultdict(dict)
    for (model, setting), group in sorted(groups.items()):
        sad_mean, sad_std = _mean_std([r.sad for r in group])
        mse_mean, mse_std = _mean_std([r.mse for r in group])
        table[model][setting] = Cell(len(group), sad_mean, sad_std, mse_mean, mse_std)
    return dict(table)


def _duplicate_notes(runs: Sequence[Run]) -> list[str]:
    """Notes on runs sharing model, setting and seed: the folder mixes sweeps."""
    seen: dict[tuple[str, str, int | None], list[str]] = defaultdict(list)
    for run in runs:
        seen[(run.model, run.setting, run.seed)].append(run.path)
    return [
        f"{len(paths)} runs of {model} {setting} seed {seed} ({', '.join(paths)}), all averaged"
        for (model, setting, seed), paths in seen.items()
        if len(paths) > 1
    ]


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if metric == "mse" else f"{value:.2f}"


def _cell_text(cell: Cell | None, metric: str, n_max: int) -> str:
    if cell is None:
        return "–"
    mean, std = getattr(cell, f"{metric}_mean"), getattr(cell, f"{metric}_std")
    text = _fmt(mean, metric) if std is None else f"{_fmt(mean, metric)} ± {_fmt(std, metric)}"
    return text if cell.n == n_max else f"{text} (n={cell.n})"


def to_markdown(table: dict[str, dict[str, Cell]], runs: Sequence[Run]) -> str:
    """The Table 2 layout in Markdown, the published row first."""
    test_sets = {s: sorted({r.test_set for r in runs if r.setting == s}) for s in SETTINGS}
    from_val = sum(r.source == "val" for r in runs)
    header = ["Model", "Seeds"] + [f"{s} {m.upper()}" for s in SETTINGS for m in METRICS]
    lines = [
        "# PPT benchmark (P3M-10k, Table 2 layout)",
        "",
        "SAD and MSE of the trained model on each setting's headline test set ("
        + "; ".join(f"{s}: {', '.join(t) or '–'}" for s, t in test_sets.items())
        + "), mean ± sample standard deviation (ddof=1) over seeds; lower is better. "
        + "Metrics: `test/` of each run's metrics.json"
        + (
            f" (`val/` for {from_val} run(s) without test metrics; see runs.csv)."
            if from_val
            else "."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---", "---:"] + ["---:"] * (len(header) - 2)) + "|",
    ]
    published = [_fmt(PUBLISHED[s][m], m) for s in SETTINGS for m in METRICS]
    lines.append("| " + " | ".join([PUBLISHED_NAME, "–", *published]) + " |")
    for model, cells in table.items():
        seeds = sorted({r.seed for r in runs if r.model == model}, key=str)
        n_max = max(c.n for c in cells.values())
        values = [_cell_text(cells.get(s), m, n_max) for s in SETTINGS for m in METRICS]
        lines.append("| " + " | ".join([model, ", ".join(map(str, seeds)), *values]) + " |")
    return "\n".join(lines) + "\n"


def _write_table_csv(path: Path, table: dict[str, dict[str, Cell]]) -> None:
    stats = [(s, m, k) for s in SETTINGS for m in METRICS for k in ("mean", "std")]
    fields = ["model"] + [f"{s}_{m}_{k}" for s, m, k in stats] + [f"{s}_n" for s in SETTINGS]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        row: dict[str, Any] = {"model": PUBLISHED_NAME}
        row.update({f"{s}_{m}_mean": PUBLISHED[s][m] for s in SETTINGS for m in METRICS})
        writer.writerow(row)
        for model, cells in table.items():
            row = {"model": model}
            for setting, cell in cells.items():
                row[f"{setting}_n"] = cell.n
                for metric in METRICS:
                    for stat in ("mean", "std"):
                        value = getattr(cell, f"{metric}_{stat}")
                        row[f"{setting}_{metric}_{stat}"] = "" if value is None else repr(value)
            writer.writerow(row)


def _write_runs_csv(path: Path, runs: Sequence[Run]) -> None:
    fields = ["model", "setting", "seed", "test_set", "source", "sad", "mse", "task_name", "path"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for run in sorted(runs, key=lambda r: (r.model, r.setting, str(r.seed), r.path)):
            writer.writerow({f: getattr(run, f) for f in fields})


def plot(table: dict[str, dict[str, Cell]], path: Path) -> None:
    """SAD per setting, a bar per model (published first), error bars one standard deviation."""
    # The Agg canvas directly, not pyplot: no global backend switch, no GUI.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = [PUBLISHED_NAME, *table]
    width = 0.8 / len(models)
    fig = Figure(figsize=(max(7.0, 1.6 * len(SETTINGS) * len(models) ** 0.5), 5.0))
    fig.set_layout_engine("constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, model in enumerate(models):
        xs, means, errs = [], [], []
        for j, setting in enumerate(SETTINGS):
            if model == PUBLISHED_NAME:
                mean, std = PUBLISHED[setting]["sad"], None
            elif setting in table[model]:
                mean, std = table[model][setting].sad_mean, table[model][setting].sad_std
            else:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            means.append(mean)
            # NaN draws no error bar: a single seed, or the published numbers.
            errs.append(float("nan") if std is None else std)
        hatch = "//" if model == PUBLISHED_NAME else None
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=model, hatch=hatch)
    ax.set_xticks(range(len(SETTINGS)), [f"{s}\n(train:test)" for s in SETTINGS])
    ax.set_ylabel("SAD (lower is better)")
    ax.set_title("PPT benchmark: SAD on the headline test set, mean ± std over seeds")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(3, len(models)), fontsize="small")
    fig.savefig(path, dpi=120)


def write_report(root: Path, out: Path | None = None) -> dict[str, Any]:
    """Tabulate the runs under ``root`` into ``out`` (default ``root``).

    Returns:
        ``{"table": model -> setting -> Cell, "runs": [...], "notes": [...], "markdown": str}``.

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
    table = summarise(runs)
    markdown = to_markdown(table, runs)
    (out / "table.md").write_text(markdown)
    _write_table_csv(out / "table.csv", table)
    _write_runs_csv(out / "runs.csv", runs)
    plot(table, out / "table.png")
    return {"table": table, "runs": runs, "notes": notes, "markdown": markdown}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m p3m_lightning.report <sweep dir> [--out DIR]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m p3m_lightning.report",
        description="Tabulate a PPT sweep of train.py (every metrics.json under DIR) as the "
        "paper's Table 2: table.md, table.csv, runs.csv and table.png.",
    )
    parser.add_argument("dir", type=Path, help="the sweep folder (searched recursively)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: DIR)")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.dir, args.out)
    except ReportError as err:
        print(f"report: {err}", file=sys.stderr)
        return EXIT_USAGE
    for note in report["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(report["markdown"])
    out = args.out or args.dir
    print(f"{len(report['runs'])} runs; wrote table.md, table.csv, runs.csv, table.png to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
