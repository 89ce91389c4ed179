"""Held-out corpus for bench/dedup.py: IT-helpdesk tickets, written apart from the tuning one.

Nothing here was run while the dedup configuration was chosen (that was done on
`dedup_bank.py`); it exists to check that the choice generalises. It shares no templates,
vocabulary, synonym table or perturbation code with the bank corpus, and its hard cases are
built differently on purpose:

- typos are keyboard slips (a neighbouring key, a dropped or doubled letter, two letters
  transposed), 2 to 6 % of the words;
- reordered copies move whole sentences, and sometimes the greeting too;
- rewordings use an IT thesaurus, sometimes a two-word phrase for one word;
- templated tickets (access requests, alerts, asset moves) vary only a random subset of at
  least two slots between members of a group, some of which hold no digits at all;
- same-vocabulary texts are shuffles of one small word pool: whole-word shuffles, or shuffles
  of 2-3 word chunks, which keep most word bigrams.
"""

from __future__ import annotations

import random

Doc = tuple[str, int, str]  # text, cluster id, kind

PEOPLE = ["Priya Nair", "Tom Becker", "Lucia Romano", "Sven Olsen", "Aiko Tanaka", "Omar Haddad"]
PEOPLE += ["Grace Okafor", "Mateo Silva", "Nadia Petrova", "Liam Walsh", "Zara Ahmed"]
DEPTS = ["finance", "legal", "marketing", "warehouse", "payroll", "research", "sales", "design"]
APPS = ["Outlook", "Teams", "SAP", "Jira", "Slack", "Excel", "Zoom", "Salesforce", "VS Code"]
APPS += ["Photoshop", "the ERP client", "the intranet", "the VPN client", "OneDrive"]
FLOORS = ["ground floor", "second floor", "third floor", "annex", "basement lab", "east wing"]
LEVELS = ["read-only", "editor", "administrator", "approver", "auditor"]

SENTENCES = [
    "My laptop {asset} will not boot past the manufacturer logo since this morning.",
    "{app} freezes every time I attach a file bigger than {mb} MB.",
    "I cannot connect to the VPN from home, the client says error {hex}.",
    "The printer on the {floor} prints blank pages for everyone in {dept}.",
    "Please reset my password, I am locked out after too many attempts.",
    "My second monitor flickers and goes black every few minutes.",
    "The shared drive for {dept} is not mapped anymore after the weekend update.",
    "{app} asks for my credentials again and again and never remembers them.",
    "Our meeting room on the {floor} has no working projector cable.",
    "The badge reader at the {floor} entrance rejects my card since {day}.",
    "I need {app} installed on machine {asset} for a project starting {day}.",
    "Emails from an external partner land in quarantine and I cannot release them.",
    "The docking station does not charge my laptop although the light is on.",
    "My phone stopped syncing the work calendar after I changed my password.",
    "The wifi in the {floor} drops every {mins} minutes during calls.",
    "{person} from {dept} cannot open spreadsheets sent from our team.",
    "A pop-up claims my disk is full but the drive shows {gb} GB free.",
    "The keyboard on {asset} types double letters on some keys.",
    "I think I clicked a suspicious link in an email and want someone to check my machine.",
    "The new hire {person} has no account yet and starts on {day}.",
    "{app} crashes with code {hex} when I open the reporting tab.",
    "The server room alarm beeped twice last night around {time}.",
    "I would like a larger screen, my eyes get tired with the laptop display.",
    "Since the update {app} takes {mins} minutes to start in the morning.",
    "Please restore the folder I deleted from the {dept} share on {day}.",
    "The scanner next to the kitchen saves files with the wrong date.",
]
OPENERS = ["Hi IT,", "Hello helpdesk,", "Morning team,", "Hi all,", "Dear IT support,", ""]
SIGNOFFS = ["Thanks!", "Many thanks,", "Regards,", "Cheers,", "Thank you in advance.", ""]

FORMS = [
    "Access request. Requester {person} in the {dept} department asks for {level} access to "
    "{app}. The access is needed for the quarterly reporting work and should be granted "
    "until {day}. The line manager {manager} has approved this request by email. Please "
    "confirm once the permission is active and close ticket {ticket}.",
    "Automated alert from the monitoring system. Host {asset} in the {floor} rack reported "
    "high memory usage for more than {mins} minutes. The last check ran at {time} and the "
    "service {app} was restarted automatically. If the alert repeats, the on-call engineer "
    "{person} will investigate. Reference {ticket}.",
    "Equipment move. Please move the workstation {asset} used by {person} from the {floor} "
    "to the new desk in the {dept} area on {day}. The monitor, docking station and headset "
    "move with it. Network ports must be patched before {time}. Ticket {ticket} tracks this.",
    "Offboarding checklist for {person} of the {dept} team, last working day {day}. Disable "
    "the account at {time}, archive the mailbox, collect laptop {asset} and the badge, and "
    "transfer ownership of files in {app} to {manager}. Close ticket {ticket} when done.",
    "Software licence request. {person} needs a licence for {app} on device {asset}. The "
    "cost centre is {dept} and the budget owner {manager} agreed to the expense. Installation "
    "should happen before {day}, ideally in the morning. Request number {ticket}.",
]

POOL = ["server", "user", "password", "reset", "printer", "network", "the", "a", "on", "for"]
POOL += ["update", "ticket", "laptop", "error", "after", "before", "fails", "needs", "access"]
POOL += ["again", "new", "old", "to", "and", "is", "not", "with", "account", "file"]

THESAURUS = {
    "laptop": ["notebook", "computer"],
    "cannot": ["can not", "am unable to"],
    "freezes": ["hangs", "locks up"],
    "error": ["fault", "failure"],
    "stopped": ["quit", "ceased"],
    "please": ["kindly", "could you"],
    "broken": ["faulty", "damaged"],
    "since": ["ever since", "from"],
    "every": ["each"],
    "working": ["functioning", "usable"],
    "bigger": ["larger"],
    "deleted": ["removed", "erased"],
    "new": ["fresh", "recent"],
    "files": ["documents"],
    "screen": ["display", "monitor"],
    "install": ["set up"],
    "installed": ["set up", "deployed"],
    "again": ["once more", "repeatedly"],
    "think": ["believe", "suspect"],
    "check": ["inspect", "look at"],
    "wrong": ["incorrect"],
    "drops": ["disconnects", "cuts out"],
}
NEIGHBOURS = dict(zip("qwertyuiopasdfghjklzxcvbnm", "wertyuioposdfghjklkxcvbnmn", strict=True))


def slots(rnd: random.Random) -> dict[str, str]:
    return {
        "person": rnd.choice(PEOPLE),
        "manager": rnd.choice(PEOPLE),
        "dept": rnd.choice(DEPTS),
        "app": rnd.choice(APPS),
        "floor": rnd.choice(FLOORS),
        "level": rnd.choice(LEVELS),
        "asset": f"{rnd.choice(['LT', 'PC', 'SRV', 'WS'])}-{rnd.randint(1000, 9999)}",
        "hex": f"0x{rnd.randint(0, 0xFFFFFF):08X}",
        "ticket": f"INC{rnd.randint(100000, 999999)}",
        "day": rnd.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"])
        + f" the {rnd.randint(1, 28)}th",
        "time": f"{rnd.randint(0, 23):02d}:{rnd.choice(['05', '20', '35', '50'])}",
        "mins": str(rnd.randint(3, 45)),
        "mb": str(rnd.choice([8, 16, 32, 64])),
        "gb": str(rnd.randint(20, 400)),
    }


def plain(rnd: random.Random) -> str:
    values = slots(rnd)
    body = [s.format(**values) for s in rnd.sample(SENTENCES, rnd.randint(3, 6))]
    return " ".join(p for p in [rnd.choice(OPENERS), *body, rnd.choice(SIGNOFFS)] if p)


def form_group(rnd: random.Random) -> list[str]:
    """One form, several members; each member re-draws a random subset of >= 2 slots."""
    form = rnd.choice(FORMS)
    names = [n for n in slots(rnd) if "{" + n + "}" in form]
    base = slots(rnd)
    out = []
    for _ in range(rnd.randint(2, 7)):
        fresh = slots(rnd)
        changed = rnd.sample(names, rnd.randint(2, len(names)))
        out.append(form.format(**{**base, **{n: fresh[n] for n in changed}}))
    return out


def pool_group(rnd: random.Random) -> list[str]:
    words = [rnd.choice(POOL) for _ in range(rnd.randint(25, 45))]
    out = []
    for _ in range(rnd.randint(2, 5)):
        size = rnd.choice([1, 2, 3])
        chunks = [words[i : i + size] for i in range(0, len(words), size)]
        rnd.shuffle(chunks)
        flat = [w for c in chunks for w in c]
        out.append(" ".join(flat).capitalize() + ".")
    return out


def slip(word: str, rnd: random.Random) -> str:
    letters = [i for i, c in enumerate(word) if c.lower() in NEIGHBOURS]
    if len(letters) < 2:
        return word
    i = rnd.choice(letters[:-1])
    op = rnd.choice(["neighbour", "drop", "double", "transpose"])
    if op == "neighbour":
        return word[:i] + NEIGHBOURS[word[i].lower()] + word[i + 1 :]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def typos(text: str, rnd: random.Random) -> str:
    words = text.split(" ")
    for _ in range(max(1, round(len(words) * rnd.uniform(0.02, 0.06)))):
        i = rnd.randrange(len(words))
        words[i] = slip(words[i], rnd)
    return " ".join(words)


def sentences(text: str) -> list[str]:
    parts = text.replace(". ", ".\n").replace("! ", "!\n").replace(", ", ",\n", 1).split("\n")
    return [p for p in parts if p]


def move(text: str, rnd: random.Random) -> str:
    parts = sentences(text)
    for _ in range(10):
        order = parts[:]
        rnd.shuffle(order)
        if order != parts:
            return " ".join(order)
    return text


def reword(text: str, rnd: random.Random) -> str:
    words = text.split(" ")
    spots = [i for i, w in enumerate(words) if w.lower().strip(".,!") in THESAURUS]
    for i in rnd.sample(spots, min(len(spots), rnd.randint(1, 4))):
        core = words[i].strip(".,!")
        words[i] = words[i].replace(core, rnd.choice(THESAURUS[core.lower()]))
    if rnd.random() < 0.5:
        words.insert(rnd.randrange(1, len(words)), rnd.choice(["also", "really", "now"]))
    return " ".join(words)


PERTURB = {"typo": typos, "reorder": move, "reword": reword}


def corpus(n: int, seed: int, planted_share: float = 0.25) -> list[Doc]:
    """n docs: plain tickets, form groups and word-pool groups, a share with planted copies."""
    rnd = random.Random(seed)
    docs: list[Doc] = []
    cluster = 0
    while len(docs) < n:
        roll = rnd.random()
        if roll < 0.5:
            originals, kind = [plain(rnd)], "plain"
        elif roll < 0.8:
            originals, kind = form_group(rnd), "template"
        else:
            originals, kind = pool_group(rnd), "vocab"
        for text in originals:
            docs.append((text, cluster, kind))
            if rnd.random() < planted_share / (1 - planted_share) / 1.5:
                how = rnd.choice(sorted(PERTURB))
                for _ in range(rnd.choice([1, 1, 2])):
                    docs.append((PERTURB[how](text, rnd), cluster, how))
            cluster += 1
    docs = docs[:n]
    rnd.shuffle(docs)
    return docs
