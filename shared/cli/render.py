"""How timelines look: a rich table on a terminal, one plain line per event elsewhere."""

from __future__ import annotations

from datetime import datetime

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.events.catalog import CycleFailed

from .common import short
from .timeline import EventRow


def consumer_names(row: EventRow) -> list[str]:
    # Durable names are "<service>--<event>"; the service is what a reader wants to see.
    return [c.split("--", 1)[0] for c in row.consumers]


def status_text(row: EventRow) -> str:
    if not row.pending:
        return "sent"
    if row.last_error:
        return f"pending (attempts {row.attempts}: {row.last_error[:80]})"
    return "pending"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _when(value: datetime, with_date: bool) -> str:
    fmt = "%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S.%f"
    text = value.strftime(fmt)
    return text if with_date else text[:-3]


def _dead_letter_text(row: EventRow) -> str:
    dl = row.dead_letter
    assert dl is not None
    return f"dead-lettered by {dl.consumer} ({dl.error_kind}): {dl.reason}"


def tail_table(rows: list[EventRow], title: str | None = None) -> Table:
    # Narrow enough for an 80-column terminal: the subject loses its common prefix and the
    # long cells fold instead of being cut.
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, padding=0)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("subject", overflow="fold", min_width=18)
    table.add_column("producer", overflow="fold")
    table.add_column("cycle", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("status", overflow="fold")
    table.add_column("consumers", overflow="fold", min_width=9)
    for r in rows:
        status = status_text(r)
        table.add_row(
            r.occurred_at.strftime("%m-%d %H:%M:%S"),
            escape(r.subject.removeprefix("distillery.")),
            escape(r.producer),
            short(r.cycle_id),
            short(r.event_id),
            f"[yellow]{escape(status)}[/]" if r.pending else "[green]sent[/]",
            escape(", ".join(consumer_names(r)) or "-"),
            style="red" if r.dead_letter else None,
        )
    return table


def tail_line(r: EventRow) -> str:
    parts = [
        _when(r.occurred_at, with_date=True),
        r.subject,
        r.producer,
        f"cycle={short(r.cycle_id)}",
        f"event={short(r.event_id)}",
        status_text(r),
        f"consumers={','.join(consumer_names(r)) or '-'}",
    ]
    if r.dead_letter:
        parts.append(_dead_letter_text(r))
    return "  ".join(parts)


def print_tail(console: Console, rows: list[EventRow]) -> None:
    if console.is_terminal:
        console.print(tail_table(rows))
    else:
        for r in rows:
            console.print(tail_line(r), markup=False)


def print_cycle(console: Console, cycle_id: str, tree: list[tuple[int, EventRow]]) -> None:
    rows = [r for _, r in tree]
    task = next((r.payload_value("task_name") for r in rows if r.payload_value("task_name")), "?")
    console.print(f"[bold]cycle {cycle_id}[/]  task {escape(str(task))}")
    for depth, r in tree:
        indent = "    " * (depth - 1) + "└─▶ " if depth else ""
        consumers = ", ".join(consumer_names(r)) or "no consumer yet"
        state = f"[yellow]{escape(status_text(r))}[/]" if r.pending else "[green]sent[/]"
        line = (
            f"{indent}{_when(r.occurred_at, with_date=False)}  [bold]{escape(r.subject)}[/]"
            f"  by {escape(r.producer)}  event {short(r.event_id)}  {state}"
            f"  → {escape(consumers)}"
        )
        pad = "    " * depth + "    "
        if r.dead_letter:
            line = f"[red]{line}[/]\n{pad}[bold red]✗ {escape(_dead_letter_text(r))}[/]"
        elif r.subject == CycleFailed.subject:
            # The terminal event: which stage ended the cycle and why, without a payload dump.
            stage, reason = r.payload_value("stage"), str(r.payload_value("reason") or "")
            line += f"\n{pad}[bold red]✗ {escape(str(stage))} stage: {escape(reason[:500])}[/]"
        console.print(line)
    events = [r for r in rows if not r.dead_letter]
    pending = sum(r.pending for r in rows)
    dead = sum(1 for r in rows if r.dead_letter)
    last = max(events, key=lambda r: (r.occurred_at, r.id)).stage if events else "-"
    summary = " · ".join(
        (_plural(len(rows), "event"), f"{pending} pending", f"{dead} dead-lettered")
    )
    summary += f" · last stage: {last}"
    console.print(f"[bold red]{summary}[/]" if dead else f"[bold]{summary}[/]")
