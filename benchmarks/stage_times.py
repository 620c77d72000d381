"""Time per stage of a Snakemake run, read from its log (``.snakemake/log/*.snakemake.log``).

Per rule: jobs, job-seconds (the sum of each job's wall time: what the stage costs on a
loaded machine) and the wall-clock span from its first job's start to its last job's end;
then the run's wall time. Timestamps in the log have one-second resolution.

    python benchmarks/stage_times.py                       # the newest log in .snakemake/log
    python benchmarks/stage_times.py path/to/run.snakemake.log --json stages.json
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3}\s+\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?[Jj]ob (\d+):")
FINISH = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")


def stage_times(log: Path) -> tuple[list[dict], float]:
    """Rows per rule (in order of first start) and the run's wall seconds."""
    started: dict[str, datetime] = {}
    jobs: list[tuple[str, datetime, datetime]] = []
    now = None
    first = last = None
    for line in Path(log).read_text().splitlines():
        m = STAMP.match(line.strip())
        if m:
            now = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            first = first or now
            last = now
            continue
        if now is None:
            continue
        m = START.match(line.strip())
        if m:
            started[m.group(1)] = now
            continue
        m = FINISH.match(line.strip())
        if m and m.group(1) in started:
            jobs.append((m.group(2), started[m.group(1)], now))
    rows: dict[str, dict] = {}
    for rule, a, b in jobs:
        r = rows.setdefault(rule, {"rule": rule, "jobs": 0, "job_seconds": 0.0,
                                   "start": a, "end": b})
        r["jobs"] += 1
        r["job_seconds"] += (b - a).total_seconds()
        r["start"], r["end"] = min(r["start"], a), max(r["end"], b)
    out = sorted(rows.values(), key=lambda r: r["start"])
    for r in out:
        r["span_seconds"] = (r.pop("end") - r.pop("start")).total_seconds()
    wall = (last - first).total_seconds() if first else 0.0
    return out, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("log", nargs="?", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    log = a.log or max(Path(".snakemake/log").glob("*.snakemake.log"),
                       key=lambda f: f.stat().st_mtime)
    rows, wall = stage_times(log)
    print(f"{log}: {wall:.0f} s wall ({wall / 60:.1f} min)\n")
    print("| rule | jobs | job-seconds | wall span s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['rule']} | {r['jobs']} | {r['job_seconds']:.0f} | {r['span_seconds']:.0f} |")
    if a.json:
        a.json.write_text(json.dumps({"log": str(log), "wall_seconds": wall, "rules": rows},
                                     indent=2))


if __name__ == "__main__":
    main()
