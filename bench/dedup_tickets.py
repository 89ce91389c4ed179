"""The original corpus of bench/dedup.py: ticket-like documents with light word edits.

Documents are 3-5 sentences from 36 templates with random slot values, a greeting, a closing
and a name; a share of them get planted near-duplicates (1-3 word edits: adjacent swaps,
filler insertions, deletions, plus case, punctuation and spacing changes). Ground truth is the
cluster each document came from. Every planted copy is of kind "edit".
"""

from __future__ import annotations

import random

NAMES = ["Ana", "Ben", "Chloe", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kofi"]
PRODUCTS = [
    "the mobile app",
    "the web dashboard",
    "my smart thermostat",
    "the invoice portal",
    "the desktop client",
    "the API",
    "my router",
    "the payroll module",
    "the shared calendar",
    "the export tool",
    "the billing page",
    "my wireless earbuds",
    "the sync service",
]
ERRORS = [f"E{n:04d}" for n in range(100, 9999, 37)]
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge", "Brave", "Opera"]
SYSTEMS = ["Windows 11", "macOS 14", "Ubuntu 24.04", "Android 15", "iOS 18", "ChromeOS"]
PLANS = ["Basic", "Team", "Business", "Enterprise", "Starter", "Pro"]
TEMPLATES = [
    "Since {date} {product} crashes every time I open the settings page.",
    "I was charged {amount} twice for order {order} and need one charge refunded.",
    "Error {error} appears whenever I try to upload a file larger than {size} MB.",
    "Could you move our account from the {plan} plan to the {plan2} plan before {date}?",
    "{product} stopped syncing with my phone after the last update on {os}.",
    "The password reset email never arrives, I checked spam and waited {minutes} minutes.",
    "Our team of {people} people cannot log in since this morning, we get error {error}.",
    "Please cancel my subscription and confirm in writing that no further fees apply.",
    "The page loads forever in {browser} but works in {browser2} on the same machine.",
    "I need an invoice with our VAT number for order {order} for the accounting team.",
    "Delivery of order {order} was promised for {date} and nothing has arrived yet.",
    "When I export the report to CSV the dates come out in the wrong time zone.",
    "{product} shows a blank screen after login on {os} and {browser}.",
    "Is there a way to add {people} more seats without changing our billing cycle?",
    "The discount code from your newsletter is rejected at checkout with error {error}.",
    "My colleague {name} left the company and we need her files moved to my account.",
    "Notifications from {product} arrive about {minutes} minutes late since last week.",
    "The two factor code is always rejected although the clock on my phone is correct.",
    "We were billed for the {plan} plan although we downgraded to {plan2} on {date}.",
    "Search in {product} returns nothing for files created after {date}.",
    "The battery of {product} drains within {hours} hours even when it is idle.",
    "I would like to know whether you store our data inside the EU or elsewhere.",
    "After changing my email address I can no longer see orders placed before {date}.",
    "The mobile app asks me to update but the store says no update is available.",
    "Printing from {product} cuts off the last column of every table.",
    "Our admin {name} cannot assign roles, the button is greyed out for her.",
    "The refund of {amount} for order {order} was approved but never reached my card.",
    "Uploading photos from {os} fails halfway with a network error each time.",
    "Can you explain the difference between the {plan} and {plan2} plans for a team of {people}?",
    "Every morning at {clock} the service is unavailable for about {minutes} minutes.",
    "The chat widget covers the checkout button on small screens in {browser}.",
    "I accidentally deleted a project yesterday and would like it restored if possible.",
    "Your tracking link for order {order} shows a parcel sent to a different city.",
    "The API returns error {error} for requests with more than {size} items per page.",
    "We keep getting logged out of {product} every {minutes} minutes.",
    "Please add {name} as a second administrator on our {plan} account.",
]
GREETINGS = ["Hello,", "Hi there,", "Dear support,", "Good morning,", "Hey,", ""]
CLOSINGS = [
    "Thanks in advance.",
    "Kind regards,",
    "Thank you for your help.",
    "Best,",
    "Looking forward to your reply.",
    "Cheers,",
    "",
]
FILLERS = ["please", "really", "also", "just", "still", "again", "actually", "now"]


def fill(template: str, rnd: random.Random) -> str:
    plan, plan2 = rnd.sample(PLANS, 2)
    browser, browser2 = rnd.sample(BROWSERS, 2)
    return template.format(
        date=f"{rnd.randint(1, 28)} {rnd.choice(['March', 'April', 'May', 'June', 'July'])}",
        product=rnd.choice(PRODUCTS),
        amount=f"${rnd.randint(5, 900)}.{rnd.randint(0, 99):02d}",
        order=f"#{rnd.randint(10000, 99999)}",
        error=rnd.choice(ERRORS),
        size=rnd.choice([5, 10, 25, 50, 100, 250]),
        plan=plan,
        plan2=plan2,
        os=rnd.choice(SYSTEMS),
        minutes=rnd.randint(2, 90),
        hours=rnd.randint(2, 12),
        people=rnd.randint(2, 80),
        browser=browser,
        browser2=browser2,
        name=rnd.choice(NAMES),
        clock=f"{rnd.randint(5, 11)}:{rnd.choice(['00', '15', '30', '45'])}",
    )


def ticket(rnd: random.Random) -> str:
    body = " ".join(fill(t, rnd) for t in rnd.sample(TEMPLATES, rnd.randint(3, 5)))
    parts = [rnd.choice(GREETINGS), body, rnd.choice(CLOSINGS), rnd.choice(NAMES)]
    return " ".join(p for p in parts if p)


def edit(text: str, rnd: random.Random) -> str:
    """1-3 word edits, plus surface changes that normalisation should see through."""
    words = text.split()
    for _ in range(rnd.randint(1, 3)):
        op = rnd.choice(["swap", "insert", "delete"])
        i = rnd.randrange(1, len(words) - 1)
        if op == "swap":
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == "insert":
            words.insert(i, rnd.choice(FILLERS))
        else:
            del words[i]
    for _ in range(rnd.randint(1, 4)):
        i = rnd.randrange(len(words))
        surface = rnd.choice(["lower", "upper", "title", "comma", "bang", "strip"])
        w = words[i]
        words[i] = {
            "lower": w.lower(),
            "upper": w.upper(),
            "title": w.title(),
            "comma": w.rstrip(".,!?") + ",",
            "bang": w.rstrip(".,!?") + "!",
            "strip": w.strip(".,!?") or w,
        }[surface]
    return rnd.choice([" ", "  "]).join(words)


def corpus(n: int, seed: int, planted_share: float = 0.25) -> list[tuple[str, int, str]]:
    """n docs (text, cluster id, kind); about planted_share of them are planted variants."""
    rnd = random.Random(seed)
    docs: list[tuple[str, int, str]] = []
    cluster = 0
    while len(docs) < n:
        base = ticket(rnd)
        docs.append((base, cluster, "plain"))
        if rnd.random() < planted_share / (1 - planted_share) / 1.5:
            for _ in range(rnd.choice([1, 1, 2])):
                docs.append((edit(base, rnd), cluster, "edit"))
        cluster += 1
    docs = docs[:n]
    rnd.shuffle(docs)
    return docs
