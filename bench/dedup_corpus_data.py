"""Word lists and templates of bench/dedup_corpus.py (data only, kept apart for size)."""

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
