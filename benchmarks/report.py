"""Printing a report: a rich table on a terminal, aligned plain text in a pipe, or Markdown for the README."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from benchmarks.machine import header
from benchmarks.registry import Report, Row

COLUMNS = ("benchmark", "p50 µs", "p99 µs", "ops/s", "baseline", "ratio", "target", "met?")
_RIGHT = {"p50 µs", "p99 µs", "ops/s", "ratio"}


def cells(row: Row) -> list[str]:
    """The row's values as the strings every renderer prints."""
    s = row.stats
    if row.error is not None or s is None:
        return [row.benchmark, "error", "", "", "", "", "", row.error or ""]
    met = row.met
    return [
        row.benchmark,
        _us(s.p50),
        _us(s.p99),
        f"{s.ops_per_s:,.0f}",
        row.baseline or "",
        _ratio(row.ratio) if row.ratio is not None else ("—" if row.baseline else ""),
        str(row.target) if row.target else "",
        "" if row.target is None else ("n/a" if met is None else ("yes" if met else "NO")),
    ]


def _ratio(ratio: float) -> str:
    """Two decimals, or two significant digits for a small ratio (0.0047×, not 0.00×)."""
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    if ratio >= 0.1:
        return f"{ratio:.2f}×"
    return f"{ratio:.2g}×"


def title(report: Report) -> str:
    """The header line: the machine, and how the numbers were taken."""
    m = report.mode
    how = f"{m.iterations:,} calls per row" + (f", median of {m.rounds} rounds" if m.rounds > 1 else "")
    return f"{header(report.machine, m.name)} · {how}"


def _us(ns: float) -> str:
    us = ns / 1e3
    if us < 1:
        return f"{us:.3f}"
    if us < 100:
        return f"{us:.2f}"
    return f"{us:,.0f}"


def plain(report: Report) -> str:
    """Aligned columns, a title line per section: readable in a log, no colour, no box drawing."""
    body = [cells(r) for r in report.rows]
    widths = [max([len(c)] + [len(b[i]) for b in body]) for i, c in enumerate(COLUMNS)]

    def line(values: list[str] | tuple[str, ...]) -> str:
        parts = [v.rjust(w) if c in _RIGHT else v.ljust(w) for c, v, w in zip(COLUMNS, values, widths, strict=True)]
        return "  ".join(parts).rstrip()

    out = [title(report), "", line(COLUMNS), line(["-" * w for w in widths])]
    section = None
    for row, values in zip(report.rows, body, strict=True):
        if row.section != section:
            section = row.section
            out.append(f"[{section}]")
        out.append(line(values))
    footer = _footer(report)
    if footer:
        out += ["", *footer]
    return "\n".join(out)


def markdown(report: Report) -> str:
    """One Markdown table, a bold row per section, the header line and notes around it."""
    out = [f"_{title(report)}_", ""]
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("|" + "|".join("---:" if c in _RIGHT else "---" for c in COLUMNS) + "|")
    section = None
    for row in report.rows:
        if row.section != section:
            section = row.section
            out.append(f"| **{section}** |" + " |" * (len(COLUMNS) - 1))
        out.append("| " + " | ".join(v.replace("|", "\\|") for v in cells(row)) + " |")
    footer = _footer(report)
    if footer:
        out.append("")
        out += [f"- {line.strip()}" for line in footer]
    return "\n".join(out)


def rich_table(report: Report, file: IO[str] | None = None) -> None:
    """A rich table with a section break between groups, for a terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file)
    table = Table(title=title(report), title_justify="left")
    for c in COLUMNS:
        table.add_column(c, justify="right" if c in _RIGHT else "left", no_wrap=c != "baseline")
    section = None
    for row in report.rows:
        if row.section != section:
            if section is not None:
                table.add_section()
            section = row.section
            table.add_row(f"[bold]{section}[/bold]", *[""] * (len(COLUMNS) - 1))
        values = cells(row)
        style = "red" if row.error or row.met is False else ("green" if row.met else None)
        if style and row.error:
            values = [f"[{style}]{v}[/{style}]" for v in values]
        elif style:
            values[-1] = f"[{style}]{values[-1]}[/{style}]"
        table.add_row(*values)
    console.print(table)
    footer = _footer(report)
    if footer:
        console.print()
    for note in footer:
        console.print(note, markup=False, highlight=False)


def _footer(report: Report) -> list[str]:
    """The run's notes (fixture timings, the Cedar agreement check) and each target spelled out."""
    out = list(report.notes)
    for row in report.rows:
        if row.target is not None and row.target.why:
            verdict = {True: "met", False: "NOT met", None: "not measured"}[row.met]
            out.append(f"target: {row.benchmark} {row.target.why} — {verdict}")
    return out


def write_json(report: Report, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
