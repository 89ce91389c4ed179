"""A new kind of ticket for the demo's drift phase: Tillwise Payroll, a product line launched
after the task was written.

The task's instructions, use cases, training tickets and golden set never mention it, and its
schema has no product for it, so by the pack's rules its tickets are routed with
`product: none` like any ticket about no listed product. Everything else follows the pack's
rules (README.md): money back or an urgent impact needs a person; the impact sentence, never
the tone, sets the priority. Labels are right by construction, as in generate.py: each row's
labels are chosen first and its text composed only from sentences that imply them.

The stand-in teacher knows these rows (teacher.py: known_rows), as a real teacher would
triage a new product's tickets from its instructions. Only the standard library is used.
"""

from __future__ import annotations

import json
import random
from typing import Any

SEED = 20261203
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "September")
WHAT = ("holiday pay", "net wages", "sick pay", "overtime", "pension contributions", "tax code")
FEATURES = (
    "bi-weekly pay runs",
    "tips paid out through payroll",
    "a payslip in the employee's own language",
    "an export to our accountant's software",
)
NAMES = ("Ana", "Jonas", "Priya", "Mehmet", "Claire", "Tom", "Lucía", "Sven")
SHOPS = ("our café", "the bakery", "both of our shops", "the restaurant", "our kiosk")
# The impact sentence sets the priority (and urgent needs a person).
IMPACTS = {
    "urgent": "Payday is tomorrow morning and the bank transfers go out tonight.",
    "high": "The corrected payslips have to be filed with the tax office by the end of the month.",
    "medium": "It is a small amount each time, but the staff keep asking about it.",
}

# (category, priority or None for each impact, needs_human or None for "urgent only",
# subject, body): {month}, {what}, {n}, {m}, {feature}, {shop}.
ISSUES: tuple[tuple[str, str | None, bool | None, str, str], ...] = (
    (
        "technical",
        None,
        None,
        "{month} payroll wrong",
        "Tillwise Payroll calculated the {what} wrong for {n} employees at {shop} on the "
        "{month} payslips.",
    ),
    (
        "technical",
        None,
        None,
        "Payroll export fails",
        "The {month} pay run in Tillwise Payroll stops with an error when it gets to the {what} "
        "of {n} employees at {shop}.",
    ),
    (
        "billing",
        "medium",
        True,
        "Too many payroll seats billed",
        "We were billed for {m} Tillwise Payroll seats in {month}, but only {n} people work at "
        "{shop}. Please refund the seats we do not use.",
    ),
    (
        "billing",
        "medium",
        False,
        "Payroll price went up",
        "Since {month} the Tillwise Payroll line on our invoice is higher than the plan we "
        "signed up for, with {n} employees at {shop}. What changed?",
    ),
    (
        "account",
        "low",
        False,
        "Accountant access to payroll",
        "How can our accountant see the {month} payslips in Tillwise Payroll without my own "
        "login? We have {n} employees at {shop}.",
    ),
    (
        "feature_request",
        "low",
        False,
        "Payroll idea",
        "Could Tillwise Payroll handle {feature}? At {shop} we do it by hand for {n} employees "
        "every month since {month}.",
    ),
)


def rows(n: int = 240, seed: int = SEED) -> list[dict[str, Any]]:
    """n unique payroll tickets in golden-row format, the same ones for the same (n, seed)."""
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not a secret
    made: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(made) < n:
        if len(seen) > 50 * n:
            raise ValueError(f"too few variants for {n} unique payroll tickets")
        category, priority, human, subject, body = rng.choice(ISSUES)
        impact = ""
        if priority is None:  # a fault: its impact sets priority, urgent needs a person
            priority = rng.choice(sorted(IMPACTS))
            impact = " " + IMPACTS[priority]
            human = priority == "urgent"
        staff = rng.randint(3, 40)
        text = body.format(
            month=rng.choice(MONTHS),
            what=rng.choice(WHAT),
            n=staff,
            m=staff + rng.randint(2, 9),
            feature=rng.choice(FEATURES),
            shop=rng.choice(SHOPS),
        )
        ticket = f"Subject: {subject}\n\nHello,\n\n{text}{impact}\n\nThanks,\n{rng.choice(NAMES)}"
        if ticket in seen:
            continue
        seen.add(ticket)
        labels = {
            "category": category,
            "priority": priority,
            "product": "none",
            "needs_human": human,
            "language": "en",
        }
        made.append(
            {
                "id": f"payroll-{len(made):04d}",
                "input": ticket,
                "output": json.dumps(labels),
                "use_case": "payroll",
                "negative": False,
            }
        )
    return made
