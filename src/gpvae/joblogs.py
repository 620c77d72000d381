"""The error a failed job left in its log, for the terminal.

Rules send a job's output to its log in results/logs/ (progress bars, info lines), so
Snakemake's own report of a failed job shows only the shell command. When the run fails, the
workflow's ``onerror`` hook prints, per failed job, the message its log ends with: the
project's ``gpvae <stage>: error: ...`` (file, field, fix), or for an unexpected failure (a
bug) the last line of the traceback, with the path of the full log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

#: First line of the message the CLI prints for bad input (gpvae.cli.main).
ERROR_LINE = re.compile(r"^gpvae [\w-]+: error: ")
#: Last line of a Python traceback: ``SomeError: message`` (possibly dotted).
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(: .*)?$")
#: Lines of a message shown at most.
MAX_LINES = 40
#: Snakemake's report of a failed job in its own log: the rule, then its log files.
SNAKEMAKE_RULE = re.compile(r"^\s*Error in rule (\w+):")
SNAKEMAKE_LOG = re.compile(r"^\s*log: (.+?)(?: \(check log file\(s\) for error details\))?$")


def job_error(log: str | Path) -> str:
    """What a failed job's log says went wrong (one message, possibly several lines)."""
    path = Path(log)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    starts = [i for i, line in enumerate(lines) if ERROR_LINE.match(line)]
    if starts:
        message = [ln for ln in lines[starts[-1]:] if ln.strip()]
        return "\n".join(message[:MAX_LINES])
    tail = [ln.rstrip() for ln in lines if ln.strip()]
    exceptions = [ln for ln in tail if EXCEPTION_LINE.match(ln)]
    if exceptions:
        return (f"{exceptions[-1][:500]}\n(an unexpected error, not a check of the inputs: "
                "the traceback is in the log; please report it if the inputs look right)")
    if not tail:
        return "(the log is empty: the job was killed before writing anything?)"
    return "\n".join(tail[-5:]) + "\n(no error message in the log: killed? out of memory?)"


def failed_logs_from_snakemake_log(path: str | Path) -> list[tuple[str, list[str]]]:
    """(rule, log files) of the failed jobs that a Snakemake run log reports."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except (OSError, TypeError):
        return []
    found, rule = [], None
    for line in lines:
        m = SNAKEMAKE_RULE.match(line)
        if m:
            rule = m.group(1)
            continue
        m = SNAKEMAKE_LOG.match(line)
        if m and rule is not None:
            found.append((rule, [p.strip() for p in m.group(1).split(",") if p.strip()]))
            rule = None
    return found


def failure_report(failed: Iterable[tuple[str, list[str]]]) -> str:
    """Text for the terminal: per failed job, its error and the path of its log."""
    blocks = []
    seen: set[tuple[str, ...]] = set()
    for job, logs in failed:
        key = tuple(logs)
        if key in seen:
            continue
        seen.add(key)
        for log in logs or []:
            body = "\n".join(f"    {ln}" for ln in job_error(log).splitlines())
            blocks.append(f"gpvae: job {job} failed:\n{body}\n    (full log: {log})")
        if not logs:
            blocks.append(f"gpvae: job {job} failed (it has no log file)")
    return "\n".join(blocks)
