"""Tuning corpus for bench/dedup.py: support e-mails to a retail bank, with hard cases.

The domain, templates and synonym table are the bank's own, unrelated to the ticket-triage
task, so tuning on them does not tune to the task pack. Documents come in three roles:

- plain e-mails: 3-6 sentences from a pool with slot values, a greeting and a sign-off;
- templated letters (hard negatives): a long form letter filled in 2-8 times for different
  customers, each fill its own document: same boilerplate, different name, account, amount,
  date, branch, card and reference;
- same-vocabulary texts (hard negatives): 2-6 texts written independently by one small
  grammar over about 30 words, so their word sets nearly coincide while word order and
  meaning differ.

A share of the documents of every role gets 1-2 planted near-duplicates of one kind: typos
(1-4 letter edits), reordered sentences, or light rewording (1-3 synonyms, sometimes a filler
word added or dropped), plus case and spacing changes that normalisation should absorb.
"""

from __future__ import annotations

import random

Doc = tuple[str, int, str]  # text, cluster id, kind

NAMES = ["Maria Lopez", "John Carter", "Wei Zhang", "Fatima Bello", "Peter Novak", "Sara Berg"]
NAMES += ["Ahmed Khan", "Julia Weber", "Kwame Mensah", "Elena Rossi", "David Cohen", "Mia Lund"]
BRANCHES = ["Riverside", "Old Town", "Harbour Street", "North Park", "Station Road", "Westgate"]
CARDS = ["debit card", "credit card", "business card", "travel card", "savings card"]
MONTHS = ["January", "February", "March", "April", "May", "June", "September", "October"]

SENTENCES = [
    "A payment of {amount} left my account on {date} and I did not authorise it.",
    "My {card} ending in {last4} was declined at a shop although there is money on it.",
    "I would like to raise the daily transfer limit to {amount} for a house deposit.",
    "The mobile banking app logs me out as soon as I open the statements tab.",
    "Please send me a paper statement for the account ending {last4} for last year.",
    "I moved house and need to change the postal address on all my accounts.",
    "The standing order to my landlord did not go out on {date} as usual.",
    "Why was I charged an overdraft fee of {fee} when my balance was positive?",
    "I lost my {card} yesterday evening and want to block it straight away.",
    "The cash machine at the {branch} branch kept my card and gave no money.",
    "Could I book an appointment with a mortgage adviser at the {branch} branch?",
    "My salary has not arrived although my employer says it was paid on {date}.",
    "The one-time passcode text message never reaches my phone.",
    "I want to close my savings account and move the balance of {amount} to current.",
    "A direct debit from a gym I cancelled months ago is still being collected.",
    "The exchange rate on my transfer abroad looks much worse than advertised.",
    "My online banking password expired and the reset link says it is invalid.",
    "I received a call from someone claiming to be from the bank asking for my PIN.",
    "Interest on my fixed deposit for {date} seems lower than the agreed rate.",
    "Can you confirm that the cheque I paid in at {branch} on {date} has cleared?",
    "My joint account holder {name} cannot see our shared account in the app.",
    "The contactless limit on my {card} seems to be stuck at a low amount.",
    "I need a letter confirming my account details for a visa application.",
    "A refund of {amount} from an online shop shows as pending for two weeks now.",
    "The branch at {branch} closed early and I could not deposit my cash.",
    "I was charged twice for one purchase of {amount} on {date}.",
    "How long does it take to receive a replacement {card} by post?",
    "My business account shows a transaction reference {ref} I do not recognise.",
]
GREETINGS = ["Dear Sir or Madam,", "Hello,", "Hi,", "Good afternoon,", "To the support team,", ""]
SIGNOFFS = ["Yours faithfully,", "Best regards,", "Thank you.", "Kind regards,", "Many thanks,"]

LETTERS = [
    "Dear {name}, thank you for contacting us about the disputed payment of {amount} on your "
    "{card} ending {last4}. We have opened a case with reference {ref} and will write to you "
    "within ten working days. While we investigate, the amount has been credited to your "
    "account as a temporary refund. If the merchant provides evidence that the payment was "
    "genuine, the temporary refund may be reversed. Your {branch} branch team",
    "Dear {name}, we are writing to confirm that your request to close account number {account} "
    "has been received on {date}. Any remaining balance, currently {amount}, will be sent to "
    "the nominated account within five working days. Please destroy any cards linked to this "
    "account and cancel direct debits that are still active. Reference {ref}. Your {branch} "
    "branch team",
    "Dear {name}, your application for a personal loan of {amount} has been reviewed by our "
    "lending team. Before we can make a decision we need a copy of your last three payslips "
    "and a recent utility bill. Please upload these documents in online banking or bring them "
    "to the {branch} branch before {date}, quoting reference {ref}. Your lending team",
    "Dear {name}, a new {card} ending {last4} has been sent to your registered address and "
    "should arrive by {date}. Your old card will stop working as soon as you activate the new "
    "one. Your PIN stays the same. If the card has not arrived within seven days, please "
    "call us and quote reference {ref}. Your {branch} branch team",
    "Dear {name}, we noticed unusual activity on account number {account}: a transfer of "
    "{amount} was attempted on {date} from a device we do not recognise. We have paused the "
    "transfer to protect you. If you made this transfer, reply to this message with reference "
    "{ref} and we will release it. If not, your card and online access will be blocked. Your "
    "fraud prevention team",
]

NOUNS = ["the clerk", "the customer", "the manager", "the branch", "the bank", "the card"]
VERBS = ["sent", "blocked", "called", "paid", "checked", "closed", "moved", "opened"]
TAILS = ["today", "again", "late", "by post", "at noon", "for the loan", "on friday", "twice"]

SYNONYMS = {
    "account": ["acct"],
    "payment": ["transaction", "charge"],
    "money": ["funds", "cash"],
    "lost": ["misplaced"],
    "yesterday": ["last night"],
    "want": ["wish", "need"],
    "would": ["should"],
    "like": ["love"],
    "close": ["shut"],
    "received": ["got"],
    "phone": ["mobile"],
    "confirm": ["verify", "check"],
    "charged": ["billed"],
    "seems": ["appears", "looks"],
    "cannot": ["can't", "is unable to"],
    "arrived": ["come in", "shown up"],
    "although": ["even though", "though"],
    "immediately": ["at once"],
    "receive": ["get"],
    "still": ["yet"],
    "need": ["require"],
    "please": ["kindly"],
    "send": ["post", "mail"],
    "worse": ["poorer"],
    "letter": ["document"],
}
FILLERS = ["please", "just", "also", "really", "kindly"]


def values(rnd: random.Random) -> dict[str, str]:
    return {
        "name": rnd.choice(NAMES),
        "branch": rnd.choice(BRANCHES),
        "card": rnd.choice(CARDS),
        "amount": f"£{rnd.randint(10, 9000):,}.{rnd.randint(0, 99):02d}",
        "fee": f"£{rnd.randint(5, 40)}",
        "date": f"{rnd.randint(1, 28)} {rnd.choice(MONTHS)}",
        "last4": f"{rnd.randint(0, 9999):04d}",
        "account": f"{rnd.randint(10, 99)}-{rnd.randint(10, 99)}-{rnd.randint(1000000, 9999999)}",
        "ref": f"{rnd.choice(['DSP', 'CLS', 'LN', 'CRD', 'FRD'])}{rnd.randint(10000, 99999)}",
    }


def email(rnd: random.Random, used: set[frozenset[str]]) -> str:
    """An e-mail whose sentences no earlier one had all of: short e-mails drawn from one pool
    would otherwise repeat, and two such are duplicates whatever the generator meant."""
    body = [s.format(**values(rnd)) for s in rnd.sample(SENTENCES, rnd.randint(1, 4))]
    while frozenset(body) in used:
        body = [s.format(**values(rnd)) for s in rnd.sample(SENTENCES, rnd.randint(1, 4))]
    used.add(frozenset(body))
    parts = [rnd.choice(GREETINGS), *body, rnd.choice(SIGNOFFS), rnd.choice(NAMES)]
    return " ".join(p for p in parts if p)


def letters(rnd: random.Random) -> list[str]:
    letter = rnd.choice(LETTERS)
    return [letter.format(**values(rnd)) for _ in range(rnd.randint(2, 8))]


def grammar_texts(rnd: random.Random) -> list[str]:
    def sentence() -> str:
        a, b = rnd.sample(NOUNS, 2)
        return f"{a.capitalize()} {rnd.choice(VERBS)} {b} {rnd.choice(TAILS)}."

    return [
        " ".join(sentence() for _ in range(rnd.randint(4, 8))) for _ in range(rnd.randint(2, 6))
    ]


def typo(text: str, rnd: random.Random) -> str:
    chars = list(text)
    for _ in range(rnd.randint(1, max(2, len(text) // 50))):
        i = rnd.randrange(1, len(chars) - 1)
        if not chars[i].isalpha():
            continue
        op = rnd.choice(["swap", "delete", "insert", "replace"])
        if op == "swap":
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif op == "delete":
            del chars[i]
        elif op == "insert":
            chars.insert(i, rnd.choice("aeiourstln"))
        else:
            chars[i] = rnd.choice("abcdefghijklmnopqrstuvwxyz")
    return "".join(chars)


def reorder(text: str, rnd: random.Random) -> str:
    parts = [p + "." for p in text.rstrip(".").split(". ")]
    if len(parts) < 2:
        return text
    shuffled = parts[:]
    while shuffled == parts:
        rnd.shuffle(shuffled)
    return " ".join(shuffled)


def reword(text: str, rnd: random.Random) -> str:
    words = text.split()
    spots = [i for i, w in enumerate(words) if w.lower().strip(".,?") in SYNONYMS]
    for i in rnd.sample(spots, min(len(spots), rnd.randint(2, 4))):
        core = words[i].strip(".,?")
        words[i] = words[i].replace(core, rnd.choice(SYNONYMS[core.lower()]))
    if rnd.random() < 0.4:
        i = rnd.randrange(1, len(words) - 1)
        if rnd.random() < 0.5:
            words.insert(i, rnd.choice(FILLERS))
        else:
            del words[i]
    return " ".join(words)


def surface(text: str, rnd: random.Random) -> str:
    words = text.split()
    for _ in range(rnd.randint(0, 3)):
        i = rnd.randrange(len(words))
        words[i] = rnd.choice([str.lower, str.upper, str.title])(words[i])
    return rnd.choice([" ", "  "]).join(words)


PERTURB = {"typo": typo, "reorder": reorder, "reword": reword}


def corpus(n: int, seed: int, planted_share: float = 0.25) -> list[Doc]:
    """n docs: e-mails, letter groups and grammar groups, a share with planted copies."""
    rnd = random.Random(seed)
    docs: list[Doc] = []
    used: set[frozenset[str]] = set()
    cluster = 0
    while len(docs) < n:
        roll = rnd.random()
        if roll < 0.5:
            originals, kind = [email(rnd, used)], "plain"
        elif roll < 0.8:
            originals, kind = letters(rnd), "template"
        else:
            originals, kind = grammar_texts(rnd), "vocab"
        for text in originals:
            docs.append((text, cluster, kind))
            if rnd.random() < planted_share / (1 - planted_share) / 1.5:
                how = rnd.choice(sorted(PERTURB))
                for _ in range(rnd.choice([1, 1, 2])):
                    docs.append((surface(PERTURB[how](text, rnd), rnd), cluster, how))
            cluster += 1
    docs = docs[:n]
    rnd.shuffle(docs)
    return docs
