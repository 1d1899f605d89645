"""Rows of figures, and the table run.py prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.common import Children, Missing


@dataclass
class Row:
    """One measured figure, and its target when it has one."""

    section: str
    name: str
    value: str
    target: str = ""
    passed: bool | None = None  # None: a figure without a target
    note: str = ""
    #: Which run of its section (``--runs N``) measured it: 1..N; 0 for a
    #: section run once, and for the rows that sum up every run.
    run: int = 0

    @property
    def status(self) -> str:
        if self.passed is None:
            return ""
        return "PASS" if self.passed else "FAIL"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The run of the section being measured (see L{Row.run}).
    run: int = 0

    def add(self, *args, **kwargs) -> Row:
        kwargs.setdefault("run", self.run)
        row = Row(*args, **kwargs)
        self.rows.append(row)
        print(f"  {row.name}: {row.value}"
              + (f"   [{row.status} {row.target}]" if row.passed is not None else "")
              + (f"   ({row.note})" if row.note else ""), flush=True)
        return row

    def everyRun(self, section: str, runs: int) -> list[Row]:
        """
        After C{runs} runs of C{section}: one row per target, which passes
        only if that target passed in every run (each run's value shown).
        """
        byName: dict[str, list[Row]] = {}
        for row in self.rows:
            if row.section == section and row.run > 0 and row.passed is not None:
                byName.setdefault(row.name, []).append(row)
        summary = []
        for name, rows in byName.items():
            passed = len(rows) == runs and all(r.passed for r in rows)
            summary.append(self.add(
                section, f"{name}, every run", ", ".join(r.value for r in rows),
                target=f"{rows[0].target} in all {runs} runs", passed=passed,
                note=f"{sum(1 for r in rows if r.passed)} of {runs} runs pass", run=0))
        return summary

    def table(self) -> str:
        withRuns = any(r.run for r in self.rows)
        headers = ("section", *(("run",) if withRuns else ()), "figure", "value", "target",
                   "result")
        data = [(r.section, *((str(r.run or ""),) if withRuns else ()), r.name, r.value,
                 r.target, r.status) for r in self.rows]
        widths = [max(len(h), *(len(d[i]) for d in data)) if data else len(h)
                  for i, h in enumerate(headers)]
        line = "  ".join("-" * w for w in widths)
        out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), line]
        for d in data:
            out.append("  ".join(v.ljust(w) for v, w in zip(d, widths)).rstrip())
        return "\n".join(out)


def runAlone(run: Callable[[Report, bool, Children], None], quick: bool) -> int:
    """
    Run one benchmark section on its own (its module's C{main}): its table
    and notes printed; exit status 2, saying why, when what it measures is
    missing.
    """
    report = Report()
    children = Children()
    try:
        run(report, quick, children)
    except Missing as e:
        print(f"SKIPPED: {e}")
        return 2
    finally:
        children.killAll()
    print()
    print(report.table())
    for note in report.notes:
        print(f"note: {note}")
    return 0
