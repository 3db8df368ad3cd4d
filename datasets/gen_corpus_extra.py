"""More public_corpus domains, built on the word lists in gen_lexicon: nature diary, product
reviews, community notices and local history. No person is named; people are roles."""

from __future__ import annotations

import random

from gen_common import Grammar, bind, integer, ordered, pick, sentence, words
from gen_lexicon import (BIRDS, BUILDINGS, COLOURS, COMMON, FEATURES, FLOWERS, HISTORIC_EVENTS,
                         HOBBIES, INSECTS, JOBS, LANDSCAPE, MAMMALS, MATERIALS, OBJECTS,
                         PUBLIC_PLACES, SKY, TRADES, TREES, BAD_QUALITIES, GOOD_QUALITIES)

NATURE: Grammar = {
    **COMMON,
    "bird": BIRDS, "tree": TREES, "flower": FLOWERS, "insect": INSECTS, "mammal": MAMMALS,
    "colour": COLOURS, "landscape": LANDSCAPE, "sky": SKY,
    "bird_action": words(
        "singing from the top of|feeding on berries in|gathering moss for a nest in|calling "
        "from|sheltering in|perched quietly in|flitting in and out of|scolding a cat from"
    ),
    "when": words("earlier|later|a week earlier|a fortnight later|about the same time"),
    "s": words(
        "Walked the {landscape} near {place} on {sky}.|A {bird} was {bird_action} the {tree} by "
        "the gate.|The first {flower} is out along the {landscape}, {when} than last year.|"
        "I counted {small} kinds of insect on the {flower}, including a {insect}.|At dusk a "
        "{mammal} crossed the path ahead and vanished into the {landscape}.|The {tree} leaves "
        "are already turning {colour}.|Heard a {bird} for the first time this {season}.|Tracks "
        "in the mud by the {landscape} suggest a {mammal} has been visiting.|A {insect} landed "
        "on my sleeve, its wings {colour} in the low sun.|Notes for next week: look for {flower} "
        "on the {landscape} and listen for the {bird}.|The {tree} by the stream has come down "
        "in the wind, and a {bird} was already exploring the broken trunk.|Patches of {flower} "
        "and {flower} lined the path all the way to the {landscape}.|A {bird} and a {bird} were "
        "squabbling over the feeder.|The sky went {colour}, then {colour}, as the sun dropped "
        "behind the {tree} wood.|No sign of the {mammal} this time, but plenty of {insect} "
        "activity over the {flower}."
    ),
}

REVIEW: Grammar = {
    **COMMON,
    "object": OBJECTS, "material": MATERIALS, "feature": FEATURES,
    "when": words("last month|in the {season} sales|a few weeks ago|as a present|after a "
                  "friend recommended it|to replace one that finally broke"),
    "good_verdict": words("excellent value|better than expected|hard to fault|a real bargain"),
    "bad_verdict": words("a bit of a disappointment|only just acceptable|poor value|not worth it"),
    "good_answer": words("Yes, without hesitation.|Probably, if it went on offer.|Yes, and I "
                         "already have."),
    "bad_answer": words("No, I would look elsewhere.|Only if {feature} were improved.|Probably "
                        "not."),
    "s": words(
        "I bought this {object} {when}.|Out of the box it feels {quality}, and the {material} "
        "finish looks better than in the photos.|{feature} is {quality}, which matters more than "
        "you might think.|After {small} weeks of daily use, {feature} is still {quality}.|My "
        "main complaint is that {feature} is {worse}.|For the price, it is {verdict}.|Compared "
        "with my old {object}, it is far more {quality}.|Delivery took {small} days, and the "
        "packaging was mostly cardboard.|It is {quality} and {quality}, though {feature} could "
        "be {worse_comparative}.|The {material} version costs a little more but seems {quality}.|Rating: "
        "{rating} out of ten.|Would I buy it again? {answer}"
    ),
}

NOTICE: Grammar = {
    **COMMON,
    "object": OBJECTS, "material": MATERIALS, "colour": COLOURS, "job": JOBS, "hobby": HOBBIES,
    "venue": words(
        "village hall|community centre|library|church hall|scout hut|leisure centre|old school|"
        "cricket pavilion|bowls club|sailing club|museum foyer|town hall annexe"
    ),
    "event": words(
        "summer fete|harvest supper|duck race|beach clean|plant sale|book swap|quiz night|carol "
        "concert|bonfire night|open gardens weekend|charity fun run|craft fair|film evening"
    ),
    "cause": words(
        "air ambulance|food bank|village hall roof fund|lifeboat station|school library|animal "
        "rescue centre|local hospice|youth football club|community minibus"
    ),
    "clock": words("half past six|seven o'clock|half past seven|eight o'clock|ten in the "
                   "morning|two in the afternoon|noon"),
    "s": words(
        "The {place} {hobby} group meets every {weekday} at the {venue}, from {clock}.|Beginners "
        "are welcome, and no equipment is needed for the first session.|Lost: a {colour} {object} "
        "near the {venue} on {weekday}. Please hand it in at the {venue}.|Found: a {object} on "
        "the path behind the {venue}. Ask at the front desk.|For sale: {object}, {material}, "
        "hardly used, {mid} or nearest offer.|Wanted: a {job} for {small} hours a week; please "
        "apply at the {venue}.|The {venue} will be closed on {weekday} for repairs.|Volunteers "
        "are needed to help with the {event} in {month}.|Last {season}, the {hobby} club raised "
        "{big} for the {cause}.|Tickets for the {event} are on sale at the {venue}.|Free "
        "{hobby} taster sessions run every {weekday} in {month}.|Thank you to everyone who "
        "supported the {event}; together we raised {big} for the {cause}."
    ),
}

HISTORY: Grammar = {
    **COMMON,
    "building": BUILDINGS, "trade": TRADES, "event": HISTORIC_EVENTS,
    "job": words("apprentice|carter|labourer|clerk|packer|porter|dock hand|errand boy|"
                 "bookkeeper|night watchman"),
    "century": words("fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth"),
    "street": words("High Street|Mill Lane|Church Row|Quay Street|Tanners Lane|Market Place|"
                    "Bridge Street|Ropewalk|Salt Lane|Chapel Hill|Weavers Yard"),
    "use": words("a cafe|a youth hostel|a small museum|private flats|a community centre|an art "
                 "gallery|a bakery|an antiques shop|a climbing wall|a recording studio"),
    "carry": words("packhorse|barge|sailing ship|cart|railway wagon|coastal steamer"),
    "later": integer(1880, 2010),
    "s": words(
        "{here} grew up around the {trade} trade, which flourished in the {century} century.|The "
        "{building} on {street} dates from {year} and is now {use}.|Then came {event}, which "
        "changed the town for ever.|The old {building} was restored in {later} by a team of "
        "volunteers.|Much of the {trade} went by {carry} to {place}.|At its height the trade "
        "employed hundreds of people, from the humble {job} to the wealthy merchant.|A walking "
        "trail now links the {building}, the {building} and the {building}.|Local schoolchildren "
        "still learn about {event}.|The museum keeps tools, ledgers and photographs from the days "
        "of the {trade} trade.|By {later}, cheaper {trade} from abroad had closed most of the "
        "workshops.|Some street names, such as {street}, still recall the old trades.|Every "
        "{season}, a festival celebrates the town's {trade} heritage."
    ),
}


def nature(rng: random.Random) -> str:
    """A nature-diary entry."""
    return ordered(rng, bind(rng, NATURE, ["place"]), NATURE["s"], 5, 10)


def review(rng: random.Random) -> str:
    """A product review."""
    g = bind(rng, REVIEW, ["object", "material"])
    good = rng.random() < 0.6
    g.update({"quality": GOOD_QUALITIES if good else BAD_QUALITIES, "worse": BAD_QUALITIES,
              "verdict": REVIEW["good_verdict" if good else "bad_verdict"],
              "answer": REVIEW["good_answer" if good else "bad_answer"],
              "worse_comparative": ["better", "sturdier", "neater", "simpler"],
              "rating": [str(rng.randrange(7, 11) if good else rng.randrange(2, 6))]})
    return ordered(rng, g, REVIEW["s"], 5, 9)


def notice(rng: random.Random) -> str:
    """A few community notices from one noticeboard."""
    g = bind(rng, NOTICE, ["place"])
    return " ".join(sentence(rng, g, t) for t in pick(rng, NOTICE["s"], rng.randrange(4, 8)))


def history(rng: random.Random) -> str:
    """A short local-history piece."""
    here = rng.choice(PUBLIC_PLACES)
    g = bind(rng, {**HISTORY, "here": [here],
                   "place": [p for p in PUBLIC_PLACES if p != here]}, ["trade"])
    return ordered(rng, g, HISTORY["s"], 4, 8)


DOMAINS = [nature, review, notice, history]
