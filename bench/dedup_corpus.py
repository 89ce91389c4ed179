"""A third kind-corpus for bench/dedup.py, written apart from the bank and helpdesk ones.

Four domains, none of them a support ticket to a bank or an IT desk: product reviews, e-mails
about flats, trips and deliveries, and short chat turns (one to three sentences). Lengths run
from 7 words to about 90. Split "A" (seed 101) was the only one run while the dedup was
chosen; split "B" (seed 202) is the held-out one, and only its figures are reported as such.

Planted near-duplicates, one kind per original:

- typo: letter slips (neighbour key, drop, double, transpose) on about one word in 12-25,
  sometimes a word lower- or title-cased;
- reorder: the sentences in another order (chat turns of two or three sentences included);
- reword: a synonym (some of two words) per 25 words or part of it, up to three; contractions
  ("do not" / "don't"); a filler word inserted, or a filler or article dropped.

Hard negatives:

- template: one message filled for several cases; every member differs from the first one in
  at least two of its key facts (order or booking number, product, amount, date, name, city);
- vocab: texts over one small vocabulary that swap who does what to whom and when ("the
  landlord called the plumber before the tenant paid" / "the tenant called the landlord
  before the plumber paid"), so their word sets are equal and their meanings are not.
"""

from __future__ import annotations

import random
import re

Doc = tuple[str, int, str]  # text, cluster id, kind
SPLITS = {"A": 101, "B": 202}

FIRST = ["Maren", "Kwame", "Ines", "Bogdan", "Yusuf", "Clara", "Hiroshi", "Ayla", "Declan"]
FIRST += ["Sofia", "Rafael", "Nkechi", "Pieter", "Leila", "Tariq", "Emma", "Oskar", "Mei"]
LAST = ["Lindqvist", "Mensah", "Duarte", "Kowalski", "Demir", "Hoffmann", "Sato", "Byrne"]
LAST += ["Castillo", "Eze", "Janssen", "Rahimi", "Novak", "Moreau", "Quinn", "Varga"]
CITIES = ["Porto", "Leeds", "Gdansk", "Lyon", "Bergen", "Utrecht", "Valencia", "Graz", "Cork"]
BRANDS = ["Kestrel", "Lumio", "Brava", "Nordvik", "Pulse", "Tamarack", "Orbis", "Vela"]
ITEMS = ["kettle", "desk lamp", "air fryer", "rain jacket", "backpack", "blender", "headphones"]
ITEMS += ["coffee grinder", "hiking boots", "tent", "office chair", "espresso machine"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "September"]

REVIEW = [
    "I bought this {item} for my partner and it arrived two days early.",
    "The build quality is better than I expected at this price.",
    "After a month of daily use the handle started to feel loose.",
    "It is much quieter than the one we had before.",
    "The instructions were confusing and one screw was missing from the box.",
    "Cleaning it takes a few minutes, which is fine for me.",
    "The colour is a bit darker than in the photos on the website.",
    "Customer service replied quickly when I asked about the warranty.",
    "I would buy it again, but only when it is on sale.",
    "My only complaint is the short cable, it barely reaches the socket.",
    "It feels sturdy and the finish has not scratched so far.",
    "The battery lasts about a week between charges if you use it lightly.",
    "Packaging was mostly cardboard, which I appreciate.",
    "It does exactly what the description promises and nothing more.",
    "We returned the first one because it rattled, and the replacement is perfect.",
    "Friends who tried it asked me where I got it.",
    "The {item} from {brand} replaced a cheaper one that broke after a year.",
    "Setting it up took ten minutes and no tools were needed.",
    "The smell of plastic went away after the first few days.",
    "It is heavier than it looks, so keep that in mind if you travel.",
    "My kids use the {item} more than I do now.",
    "The buttons are small and hard to press with cold fingers.",
    "I compared it with the {brand} version and this one wins on comfort.",
    "The delivery driver left it at the wrong door, but the product is great.",
    "Spare parts are easy to order from the {brand} website.",
    "It gets warm after an hour of use, which worries me a little.",
    "The manual is only available online, which is annoying.",
    "For the money I expected a longer warranty than one year.",
    "It looks good in our kitchen and matches the other appliances.",
    "I have recommended the {item} to my whole family already.",
]
EMAIL = [
    "I am writing about the flat on {street} that I viewed last week.",
    "Could you tell me whether the deposit can be paid in two parts?",
    "The heating in the bedroom has not worked properly since the cold weather started.",
    "We would prefer a room with a view of the garden if one is still free.",
    "My train arrives quite late, so I will probably check in after ten.",
    "The parcel was left with a neighbour I have never met.",
    "I noticed a small leak under the kitchen sink this morning.",
    "Is it possible to bring a small dog, or are pets not allowed?",
    "The invoice lists two nights although we only stayed one.",
    "I have attached a photo of the damaged corner of the box.",
    "Please let me know which documents you need before the contract is signed.",
    "The neighbours upstairs have been renovating every evening this week.",
    "We are travelling with two children and would need an extra bed.",
    "I tried to call the office twice but nobody picked up.",
    "Would it be possible to move the viewing to the weekend?",
    "The key safe code you sent me does not open the box.",
    "We arrived in {city} yesterday and the apartment was not cleaned.",
    "Could you send me a copy of the signed lease for my records?",
    "The washing machine stops halfway through every cycle.",
    "I will be away until the end of the month, so please contact my sister.",
    "The parking space listed in the advert seems to belong to another flat.",
    "Our flight to {city} was cancelled and we cannot arrive on the booked date.",
    "Is breakfast included in the price or is it charged separately?",
    "The window in the living room does not close completely.",
    "My bank needs a letter from you confirming the rent I pay.",
    "The courier asked for a signature but I was at work all day.",
    "Please cancel the cleaning visit planned for next week.",
    "There is mould on the bathroom ceiling again after the last repair.",
    "Can we get a refund for the night we could not use the room?",
    "I have moved and my new address is on {street}.",
]
CHAT = [
    "hey is the {item} still in stock",
    "do you ship to {city} or only inside the country",
    "my code for ten percent off is not working at checkout",
    "can I change the delivery address after paying",
    "how long does a refund usually take to show up",
    "the tracking page has not updated since yesterday",
    "is there a bigger size of this one",
    "I want to cancel the second item but keep the first",
    "does the price include the shipping or is that extra",
    "the app logged me out and now my basket is empty",
    "which colour is closer to the picture, grey or sand",
    "could you send the receipt to my work email instead",
    "thanks, that answers my question about the {item}",
    "the courier says nobody was home but I was there all day",
    "is the {item} the same model as last year or the new one",
    "I ordered two but only one arrived in {city}",
    "can I pay on delivery when I live in {city}",
    "the {item} in the photo looks different from the one I got",
    "do you have a store in {city} where I can pick it up",
    "what does the warranty cover if the {item} breaks",
    "ok I will wait until tomorrow then",
    "can you hold the {item} for me until the weekend",
    "is it possible to swap it for another colour",
    "I got an email saying my order was split, why",
    "my parcel went to {city} instead of my home",
    "do you price match if I find the {item} cheaper elsewhere",
    "is the {brand} {item} dishwasher safe",
    "the payment went through twice, please check",
    "can you tell me when the next restock is",
    "I never got the confirmation email for my order",
    "the {item} I got makes a weird buzzing noise",
    "hi, do you sell gift cards for the {brand} shop",
    "how do I return something I bought as a gift",
    "your website says delivered but the box is not here",
]
OPENERS = ["Hello,", "Hi,", "Good afternoon,", "Dear team,", "Hi there,", ""]
SIGNOFFS = ["Best wishes,", "Thanks a lot,", "Many thanks,", "Regards,", "Cheers,", ""]
STREETS = ["Elm Row", "Harbour Lane", "Castle Street", "Mill Road", "Station Square"]

SYNONYMS = {
    "bought": ["purchased", "got"], "arrived": ["came", "showed up"], "quickly": ["fast"],
    "better": ["nicer"], "expected": ["thought", "had hoped"], "daily": ["everyday"],
    "quieter": ["less noisy"], "confusing": ["unclear"], "missing": ["absent"],
    "complaint": ["gripe", "issue"], "short": ["stubby"], "sturdy": ["solid", "robust"],
    "perfect": ["flawless", "great"], "asked": ["enquired"], "small": ["little", "tiny"],
    "prefer": ["rather have"], "probably": ["likely"], "late": ["later"], "tried": ["attempted"],
    "noticed": ["spotted", "saw"], "damaged": ["broken", "dented"], "photo": ["picture"],
    "possible": ["ok"], "move": ["shift"], "need": ["require"], "call": ["phone", "ring"],
    "change": ["update"], "usually": ["normally", "typically"], "bigger": ["larger"],
    "want": ["would like"], "send": ["email", "forward"], "thanks": ["thank you", "cheers"],
    "writing": ["emailing"], "viewed": ["saw", "visited"], "properly": ["right", "well"],
    "repair": ["fix"], "confirm": ["verify"], "received": ["got"], "still": ["yet"],
}  # fmt: skip
CONTRACT = {"I am": "I'm", "does not": "doesn't", "is not": "isn't", "I would": "I'd",
            "has not": "hasn't", "do not": "don't", "it is": "it's", "We are": "We're"}  # fmt: skip
FILLERS = ["just", "really", "actually", "also", "honestly", "basically", "quite", "very"]

# Key facts of templated messages: each member redraws at least two of a template's slots.
SLOTS = {
    "name": lambda r: f"{r.choice(FIRST)} {r.choice(LAST)}",
    "order": lambda r: f"{r.choice(['#', 'no. ', 'order '])}{r.randint(100000, 999999)}",
    "amount": lambda r: r.choice(["€", "$", "£"]) + f"{r.randint(9, 480)}.{r.randint(0, 99):02d}",
    "date": lambda r: f"{r.randint(1, 28)} {r.choice(MONTHS)}",
    "item": lambda r: f"{r.choice(BRANDS)} {r.choice(ITEMS)}",
    "city": lambda r: r.choice(CITIES),
    "nights": lambda r: str(r.randint(2, 14)),
}
TEMPLATES = [
    "Dear {name}, thank you for your order {order} of the {item}. We are sorry to hear that it "
    "arrived damaged. A replacement will be sent to your address in {city} by {date}, and the "
    "amount of {amount} will not be charged again. If the replacement does not arrive, reply "
    "to this message and a member of the returns team will get in touch.",
    "Hello, this is a reminder that your stay in {city} starts on {date} and lasts {nights} "
    "nights. The booking is under the name {name}, reference {order}, and the remaining "
    "balance of {amount} is due at check-in. Please bring an ID that matches the booking.",
    "Review by {name}: I ordered the {item} on {date} and paid {amount}. It works, but the "
    "delivery to {city} took longer than promised and the box was open when it came. I gave "
    "it three stars because the product itself is fine and the seller answered my e-mail.",
    "Hi {name}, your refund of {amount} for order {order} was approved on {date}. Depending "
    "on your bank it can take up to five working days before it shows on your statement. The "
    "returned {item} was received at our warehouse and checked by our staff.",
    "We confirm the viewing of the flat in {city} on {date} at {nights} in the afternoon with "
    "{name}. The monthly rent is {amount} excluding bills, and a deposit of two months is "
    "required when the lease is signed. Please reply if you need to change the time.",
]
# One small vocabulary per group; members differ in who does what, and when.
ROLES = [
    ["the landlord", "the tenant", "the plumber", "the agent", "the neighbour"],
    ["the courier", "the seller", "the buyer", "the driver", "the clerk"],
    ["the host", "the guest", "the cleaner", "the owner", "the guide"],
    ["the reviewer", "the shop", "the maker", "the customer", "the support team"],
]
VERBS = ["called", "paid", "warned", "thanked", "emailed", "blamed", "visited", "met"]
LINKS = ["before", "after", "because", "while", "although", "so"]
TAILS = ["", " on time", " twice", " again", " about the key", " about the bill", " by phone"]


def person(rnd: random.Random) -> str:
    return f"{rnd.choice(FIRST)} {rnd.choice(LAST)}"


def fill_in(rnd: random.Random, picked: list[str]) -> list[str]:
    return [
        s.format(
            item=rnd.choice(ITEMS),
            city=rnd.choice(CITIES),
            street=rnd.choice(STREETS),
            brand=rnd.choice(BRANDS),
        )
        for s in picked
    ]


def plain(rnd: random.Random, seen: dict[str, list[set[str]]]) -> str:
    """A review, an e-mail or a chat whose sentence templates overlap no earlier plain doc's in
    more than half of them: two such are near-duplicates whatever the generator meant."""
    for _ in range(1000):
        domain = rnd.choice(["review", "email", "chat"])
        pool, lo, hi = {"review": (REVIEW, 2, 7), "email": (EMAIL, 2, 6), "chat": (CHAT, 1, 3)}[
            domain
        ]
        picked = rnd.sample(pool, rnd.randint(lo, hi))
        mine = set(picked)
        if all(
            2 * len(mine & other) <= max(len(mine), len(other))
            for s in picked
            for other in seen.get(s, [])
        ):
            break
    for s in picked:
        seen.setdefault(s, []).append(mine)
    return written(rnd, domain, picked)


def written(rnd: random.Random, domain: str, picked: list[str]) -> str:
    if domain == "review":
        body = fill_in(rnd, picked)
        stars = f"{rnd.randint(1, 5)} out of 5." if rnd.random() < 0.5 else ""
        return " ".join(p for p in [*body, stars] if p)
    if domain == "email":
        parts = [rnd.choice(OPENERS), *fill_in(rnd, picked), rnd.choice(SIGNOFFS)]
        return " ".join(p for p in [*parts, person(rnd)] if p)
    turns = fill_in(rnd, picked)
    return " ".join(t + rnd.choice(["", ".", "?", "!"]) for t in turns).strip()


def template_group(rnd: random.Random) -> list[str]:
    text = rnd.choice(TEMPLATES)
    slots = sorted(set(re.findall(r"{(\w+)}", text)))
    first = {s: SLOTS[s](rnd) for s in slots}
    members = [first]
    for _ in range(rnd.randint(1, 5)):
        values = dict(first)
        for s in rnd.sample(slots, rnd.randint(2, min(4, len(slots)))):
            while values[s] == first[s]:
                values[s] = SLOTS[s](rnd)
        members.append(values)
    return [text.format(**m) for m in members]


def clause(roles: list[str], rnd: random.Random) -> str:
    a, b, c, d = rnd.sample(roles, 4)
    verb, verb2 = rnd.sample(VERBS, 2)
    return f"{a} {verb} {b} {rnd.choice(LINKS)} {c} {verb2} {d}{rnd.choice(TAILS)}"


def vocab_group(rnd: random.Random) -> list[str]:
    """Members are one skeleton (verbs, links, tails) with its roles rotated: member k gives
    each role the part of the k-th next one, so every two members use the same words and no
    role does in one what it does in another."""
    roles = rnd.choice(ROLES)
    skeleton = [clause(roles, rnd) for _ in range(rnd.randint(1, 4))]
    present = [r for r in roles if any(r in s for s in skeleton)]
    rnd.shuffle(present)
    pattern = re.compile("|".join(re.escape(r) for r in present))
    out = []
    for k in rnd.sample(range(len(present)), rnd.randint(2, min(4, len(present)))):
        mapping = {r: present[(i + k) % len(present)] for i, r in enumerate(present)}
        body = [pattern.sub(lambda m, to=mapping: to[m.group(0)], s) for s in skeleton]
        out.append(" ".join(s[0].upper() + s[1:] + "." for s in body))
    return out


NEIGHBOUR = dict(zip("qwertyuiopasdfghjklzxcvbnm", "wqrtyuiopsadfghjkklxcvbnmn", strict=True))


def slip(word: str, rnd: random.Random) -> str:
    spots = [i for i, c in enumerate(word[:-1]) if c.isalpha() and word[i + 1].isalpha()]
    if not spots:
        return word
    i = rnd.choice(spots)
    op = rnd.choice(["neighbour", "drop", "double", "transpose"])
    if op == "neighbour":
        return word[:i] + NEIGHBOUR.get(word[i].lower(), word[i]) + word[i + 1 :]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def typo(text: str, rnd: random.Random) -> str:
    words = text.split(" ")
    for _ in range(max(1, round(len(words) / rnd.uniform(12, 25)))):
        i = rnd.randrange(len(words))
        words[i] = slip(words[i], rnd)
    if rnd.random() < 0.3:
        i = rnd.randrange(len(words))
        words[i] = rnd.choice([str.lower, str.title])(words[i])
    return " ".join(words)


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?!])\s+", text) if s]


def reorder(text: str, rnd: random.Random) -> str:
    parts = split_sentences(text)
    order = parts[:]
    while order == parts:
        rnd.shuffle(order)
    return " ".join(order)


def reword(text: str, rnd: random.Random) -> str:
    for long, short in rnd.sample(sorted(CONTRACT.items()), 2):
        text = text.replace(long, short) if rnd.random() < 0.5 else text
    words = text.split(" ")
    spots = [i for i, w in enumerate(words) if w.lower().strip(".,?!") in SYNONYMS]
    # Light for the length: one synonym per 25 words or part of it, at most three.
    for i in rnd.sample(spots, min(len(spots), 3, 1 + len(words) // 25)):
        core = words[i].strip(".,?!")
        new = rnd.choice(SYNONYMS[core.lower()])
        words[i] = words[i].replace(core, new.capitalize() if core[0].isupper() else new)
    if rnd.random() < 0.5:
        words.insert(rnd.randrange(1, len(words)), rnd.choice(FILLERS))
    fill = [i for i, w in enumerate(words) if w in FILLERS or w in ("the", "a")]
    if fill and rnd.random() < 0.3:
        del words[rnd.choice(fill)]
    return " ".join(words)


PERTURB = {"typo": typo, "reorder": reorder, "reword": reword}


def corpus(n: int, seed: int, planted_share: float = 0.25) -> list[Doc]:
    """n docs of every domain; about planted_share of them are planted copies."""
    rnd = random.Random(seed)
    docs: list[Doc] = []
    seen: dict[str, list[set[str]]] = {}
    cluster = 0
    while len(docs) < n:
        roll = rnd.random()
        if roll < 0.6:
            originals, kind = [plain(rnd, seen)], "plain"
        elif roll < 0.85:
            originals, kind = template_group(rnd), "template"
        else:
            originals, kind = vocab_group(rnd), "vocab"
        for text in originals:
            docs.append((text, cluster, kind))
            if rnd.random() < planted_share / (1 - planted_share) / 1.4:
                how = rnd.choice(sorted(PERTURB))
                if how == "reorder" and len(split_sentences(text)) < 2:
                    how = "reword"  # one sentence: nothing to move
                for _ in range(rnd.choice([1, 1, 2])):
                    copy = PERTURB[how](text, rnd)
                    if copy != text:
                        docs.append((copy, cluster, how))
            cluster += 1
    docs = docs[:n]
    rnd.shuffle(docs)
    return docs


def split(name: str, n: int) -> list[Doc]:
    return corpus(n, SPLITS[name])
