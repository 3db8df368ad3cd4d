"""superglue/{boolq,rte,copa,cb}: synthetic tasks in the official SuperGLUE jsonl schema.

Field names and label conventions are SuperGLUE's own, so one loader reads these files and the
real ones: BoolQ ``question, passage, idx, label`` (JSON true/false); RTE ``premise,
hypothesis, idx, label`` ("entailment" / "not_entailment"); COPA ``premise, choice1,
choice2, question`` ("cause" / "effect"), ``idx``, ``label`` (0 / 1); CB ``premise,
hypothesis, idx, label`` ("entailment" / "contradiction" / "neutral"). Unlike the official
test files, ours keep their labels. The content is small and regular enough for a model of a
few million parameters to learn, with distractors so that word overlap alone does not solve it.
CB is the hard one, made to leave headroom for comparing federated, centralized and local-only
training: three classes, and half of its labels hang on which of 28 verbs the speaker used.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from gen_common import pick, rng_for, tidy, to_jsonl, words
from gen_lexicon import PUBLIC_PLACES

SPLITS = {"train": 2000, "validation": 300, "test": 300}
TASKS = ["boolq", "rte", "copa", "cb"]

# ---------------------------------------------------------------- BoolQ
RIVERS = words("Aln|Brede|Corrow|Dell|Esk|Fenn|Gowan|Hale|Irwell|Lune|Mease|Nidd|Ouse|Rye|Tamar")
CENTURIES = words("twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth")
WEEKDAYS = words("Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday")
SEASONS = words("spring|summer|autumn|winter")

# attribute: (values, passage sentence, question); {t} is the town, {v} the value.
ATTRIBUTES: dict[str, tuple[list[str], str, str]] = {
    "harbour": (["yes", "no"], "{t} {v_has} a harbour", "does {t} have a harbour"),
    "station": (["yes", "no"], "{t} {v_has} a railway station", "is there a railway station in {t}"),
    "market": (WEEKDAYS, "the market in {t} is held every {v}", "is the market in {t} held on {v}"),
    "river": (RIVERS, "the river {v} flows through {t}", "does the river {v} flow through {t}"),
    "founded": (CENTURIES, "{t} was founded in the {v} century",
                "was {t} founded in the {v} century"),
    "festival": (SEASONS, "{t} holds its music festival every {v}",
                 "is the music festival in {t} held in {v}"),
    "twin": (PUBLIC_PLACES, "{t} is twinned with {v}", "is {t} twinned with {v}"),
}


def _fact(attr: str, town: str, value: str) -> str:
    text = ATTRIBUTES[attr][1]
    has = {"yes": "has", "no": "has never had"}.get(value, "")
    return tidy(text.format(t=town, v=value, v_has=has)) + "."


def boolq(rng: random.Random, label: bool) -> dict[str, object]:
    """Facts about two towns; the question asks about one, often with the other's value."""
    town, rival = pick(rng, PUBLIC_PLACES, 2)
    attrs = pick(rng, sorted(ATTRIBUTES), 3)
    ask = attrs[0]
    value = {(t, a): rng.choice([v for v in ATTRIBUTES[a][0] if v not in (town, rival)])
             for t in (town, rival) for a in attrs}
    yes_no = ask in ("harbour", "station")
    if yes_no:  # "does it have X": the label is the fact itself; the rival often differs
        value[(town, ask)] = "yes" if label else "no"
        if rng.random() < 0.6:
            value[(rival, ask)] = "no" if label else "yes"
    lines = [_fact(ask, town, value[(town, ask)])]
    if rng.random() < 0.8:
        lines.append(_fact(ask, rival, value[(rival, ask)]))
    lines += [_fact(a, t, value[(t, a)]) for t in (town, rival) for a in attrs[1:]
              if rng.random() < 0.6]
    rng.shuffle(lines)
    asked = value[(town, ask)]
    if not yes_no and not label:
        rival_value = value[(rival, ask)]
        asked = rival_value if rival_value != asked and rng.random() < 0.6 else rng.choice(
            [v for v in ATTRIBUTES[ask][0] if v not in (asked, town, rival)])
    question = ATTRIBUTES[ask][2].format(t=town, v=asked)
    return {"question": question.lower(), "passage": " ".join(lines), "label": label}


# ---------------------------------------------------------------- RTE
PEOPLE = [("a farmer", "a person"), ("the baker", "a person"), ("a nurse", "a person"),
          ("a retired teacher", "a person"), ("the harbour master", "a person"),
          ("a young student", "a person"), ("the mayor", "an official"),
          ("a police officer", "an official"), ("a spaniel", "a dog"), ("a terrier", "a dog"),
          ("a tabby cat", "a cat"), ("a tourist", "a visitor")]
THINGS = [("a red bicycle", "a bicycle"), ("an old tractor", "a vehicle"),
          ("a wooden chair", "some furniture"), ("a basket of apples", "some fruit"),
          ("a silver watch", "a watch"), ("a small rowing boat", "a boat"),
          ("a leather bag", "a bag"), ("a box of books", "some books"),
          ("a painting of the harbour", "a painting"), ("a bunch of keys", "some keys"),
          ("a blue umbrella", "an umbrella"), ("a loaf of bread", "some food")]
VERBS = [("sell", "sold", "sold"), ("buy", "bought", "bought"), ("carry", "carried", "carried"),
         ("find", "found", "found"), ("deliver", "delivered", "delivered"),
         ("borrow", "borrowed", "borrowed"), ("lose", "lost", "lost"),
         ("photograph", "photographed", "photographed"), ("steal", "stole", "stolen"),
         ("hide", "hid", "hidden")]
ANIMAL_VERBS = [("find", "found", "found"), ("carry", "carried", "carried"),
                ("hide", "hid", "hidden"), ("steal", "stole", "stolen")]


def _event(rng: random.Random) -> dict[str, Any]:
    subj = rng.choice(PEOPLE)
    verbs = ANIMAL_VERBS if subj[1] in ("a dog", "a cat") else VERBS
    return {"subj": subj, "obj": rng.choice(THINGS), "verb": rng.choice(verbs),
            "place": rng.choice(PUBLIC_PLACES), "day": rng.choice(WEEKDAYS)}


def _say(subj: str, obj: str, verb: str, place: str, day: str) -> str:
    return tidy(f"{subj} {verb} {obj} in {place} on {day}.")


def rte(rng: random.Random, label: str) -> dict[str, object]:
    """A two-event premise; the hypothesis restates, generalises or subtly changes one event."""
    e, extra = _event(rng), _event(rng)
    general = rng.random() < 0.2  # premise uses the general word: the specific one is NOT implied
    (s_spec, s_gen), (o_spec, o_gen), (base, past, pp) = e["subj"], e["obj"], e["verb"]
    subj = s_gen if general else s_spec
    premise = [_say(subj, o_spec, past, e["place"], e["day"]),
               tidy(f"Earlier that week, {extra['subj'][0]} {extra['verb'][1]} "
                    f"{extra['obj'][0]} in {extra['place']}.")]
    if rng.random() < 0.5:
        premise.reverse()
    if label == "entailment":
        kind = rng.choice(["drop", "general", "passive", "where"])
        hyp = {"drop": f"{subj} {past} {o_spec}.",
               "general": f"{s_gen} {past} {o_gen} in {e['place']}.",
               "passive": f"{o_spec} was {pp} by {subj}.",
               "where": f"{subj} was in {e['place']} on {e['day']}."}[kind]
    else:
        kind = "specific" if general and s_spec != s_gen and rng.random() < 0.5 else rng.choice(
            ["place", "negate", "verb", "day", "object"])
        other_place = rng.choice([p for p in PUBLIC_PLACES if p not in (e["place"],
                                                                       extra["place"])])
        other_verb = rng.choice([v for v in VERBS if v[0] != base])
        other_obj = rng.choice([t for t in THINGS if t[0] not in (o_spec, extra["obj"][0])])
        other_day = rng.choice([d for d in WEEKDAYS if d != e["day"]])
        hyp = {"specific": f"{s_spec} {past} {o_spec} in {e['place']}.",
               "place": f"{subj} {past} {o_spec} in {other_place}.",
               "negate": f"{subj} did not {base} {o_spec}.",
               "verb": f"{subj} {other_verb[1]} {o_spec} in {e['place']}.",
               "day": f"{subj} {past} {o_spec} in {e['place']} on {other_day}.",
               "object": f"{subj} {past} {other_obj[0]} in {e['place']}."}[kind]
    return {"premise": " ".join(premise), "hypothesis": tidy(hyp), "label": label}


# ---------------------------------------------------------------- COPA
# (premise, cause, effect); {S} subject, {P} pronoun, {O} object pronoun, {H} possessive.
SCHEMAS = [
    ("{S} slipped on the path.", "The path was covered in ice.", "{P} bruised {H} knee."),
    ("{S} turned on the heater.", "The room was freezing.", "The room grew warm."),
    ("{S} missed the bus.", "{P} overslept.", "{P} was late for work."),
    ("{S}'s phone battery died.", "{P} forgot to charge it.", "{P} could not call home."),
    ("{S} opened an umbrella.", "It started to rain.", "{P} stayed dry."),
    ("{S} went to the dentist.", "{P} had a toothache.", "{P} had a filling."),
    ("{S} drank a glass of water.", "{P} was thirsty.", "{P} felt refreshed."),
    ("{S} put on a thick coat.", "It was cold outside.", "{P} felt warm on the walk."),
    ("{S} burned the toast.", "{P} left it under the grill too long.",
     "The kitchen smelled of smoke."),
    ("{S} apologised to {H} friend.", "{P} had been rude.", "{H} friend forgave {O}."),
    ("{S} fell asleep on the sofa.", "{P} was exhausted.", "{P} woke up with a stiff neck."),
    ("{S} studied every evening.", "{P} had an exam coming up.", "{P} passed the exam."),
    ("{S} ran for the train.", "{P} was running late.", "{P} was out of breath."),
    ("The river burst its banks.", "It had rained for days.", "The road by the river closed."),
    ("The ice cream melted.", "It was left in the sun.", "It dripped onto the table."),
    ("The plants wilted.", "Nobody watered them.", "The leaves turned brown."),
    ("The lights went out.", "A storm brought down the power lines.",
     "{S} lit a candle."),
    ("The glass shattered.", "{S} dropped it on the tiles.", "{S} swept up the pieces."),
    ("The crowd cheered.", "The home team scored.", "The players waved back."),
    ("The baby cried.", "The baby was hungry.", "{S} warmed a bottle of milk."),
    ("{S} lost {H} keys.", "{P} had a hole in {H} pocket.", "{P} was locked out."),
    ("{S} got a sunburn.", "{P} forgot to wear sun cream.", "{H} skin peeled."),
    ("{S} bought a new bicycle.", "{H} old one was stolen.", "{P} cycled to work."),
    ("{S} laughed out loud.", "{H} friend told a joke.", "Everyone turned to look."),
    ("{S} shivered.", "The window was open.", "{P} closed the window."),
    ("The car would not start.", "The battery was flat.", "{S} called a mechanic."),
    ("{S} sneezed.", "There was dust on the shelf.", "{P} reached for a tissue."),
    ("The milk turned sour.", "It was left out of the fridge.", "{S} poured it away."),
    ("{S} won the race.", "{P} trained all winter.", "{P} received a medal."),
    ("The dog barked.", "A stranger came to the door.", "{S} went to see who it was."),
    ("{S} moved to a new town.", "{P} found a job there.", "{P} made new friends."),
    ("{S} took a painkiller.", "{P} had a headache.", "The pain eased."),
    ("The bread rose.", "{S} added yeast to the dough.", "The loaf was light and airy."),
    ("The ship sank.", "It hit a rock.", "The crew took to the lifeboats."),
    ("{S} whispered.", "The baby was asleep.", "Nobody else could hear."),
    ("The pond froze.", "The temperature dropped below zero.", "Children skated on it."),
    ("{S} stayed home from school.", "{P} had a fever.", "{P} missed the class trip."),
    ("{S} wore sunglasses.", "The sun was bright.", "{P} could see clearly."),
    ("The shop closed early.", "The owner was ill.", "{S} could not buy bread."),
    ("The kettle whistled.", "The water boiled.", "{S} made a pot of tea."),
]
SUBJECTS = [("The man", "he", "him", "his"), ("The woman", "she", "her", "her"),
            ("My brother", "he", "him", "his"), ("My sister", "she", "her", "her"),
            ("The boy", "he", "him", "his"), ("The girl", "she", "her", "her"),
            ("Our neighbour", "she", "her", "her"), ("The farmer", "he", "him", "his"),
            ("The teacher", "she", "her", "her"), ("My uncle", "he", "him", "his")]


def _fill(text: str, who: tuple[str, str, str, str]) -> str:
    s, p, o, h = who
    return tidy(text.replace("{S}", s.lower() if not text.startswith("{S}") else s)
                .replace("{P}", p).replace("{O}", o).replace("{H}", h))


def copa(rng: random.Random, label: int) -> dict[str, object]:
    """Pick cause or effect; the distractor is the other side of the same event half the time."""
    i = rng.randrange(len(SCHEMAS))
    premise, cause, effect = SCHEMAS[i]
    who = rng.choice(SUBJECTS)
    question = rng.choice(["cause", "effect"])
    right, other = (cause, effect) if question == "cause" else (effect, cause)
    if rng.random() < 0.5:
        j = rng.choice([k for k in range(len(SCHEMAS)) if k != i])
        other = SCHEMAS[j][1 if question == "cause" else 2]
    choices = [_fill(right, who), _fill(other, who)]
    if label == 1:
        choices.reverse()
    return {"premise": _fill(premise, who), "choice1": choices[0], "choice2": choices[1],
            "question": question, "label": label}


# ---------------------------------------------------------------- CB (three classes, harder)
SPEAKERS = words(
    "the shopkeeper|a neighbour|the reporter|the inspector|a passer-by|the landlord|"
    "the bus driver|a cousin|the librarian|the cashier|an old friend|the caretaker|"
    "a witness|the postman|the vicar|a fisherman|the head teacher|a customer"
)
# How the speaker's verb commits to the clause: "true" (factive), "false" (counter-factive),
# "open" (no commitment). Each needs "that" or "whether" after it.
COMMITMENT = {
    "true": words("knew that|realised that|noticed that|remembered that|confirmed that|"
                  "proved that|discovered that|was glad that|regretted that|found out that"),
    "false": words("pretended that|falsely claimed that|wrongly believed that|mistakenly "
                   "thought that|only dreamed that|made up a story that|wrongly reported that|"
                   "imagined, wrongly, that"),
    "open": words("thought that|hoped that|suspected that|guessed that|said that|feared that|"
                  "doubted that|wondered whether|asked whether|heard a rumour that"),
}
MORE_PEOPLE = PEOPLE + [("the postman", "a person"), ("a fisherman", "a person"),
                        ("the librarian", "a person"), ("a collie", "a dog"),
                        ("a black cat", "a cat"), ("the lighthouse keeper", "a person"),
                        ("a hiker", "a visitor"), ("the town clerk", "an official")]
REASONS = words("because it was raining|to help a friend|for a bet|without asking anyone|"
                "as a surprise|before breakfast|after an argument|in a great hurry")


def _cb_event(rng: random.Random) -> dict[str, Any]:
    subj = rng.choice(MORE_PEOPLE)
    verbs = ANIMAL_VERBS if subj[1] in ("a dog", "a cat") else VERBS
    return {"subj": subj, "obj": rng.choice(THINGS), "verb": rng.choice(verbs),
            "place": rng.choice(PUBLIC_PLACES), "day": rng.choice(WEEKDAYS)}


def _clause(e: dict[str, Any], *, day: bool = True, negate: bool = False) -> str:
    """``the nurse sold a red bicycle in Fennick (on Monday)``, or its negation."""
    (subj, _), (obj, _), (base, past, _) = e["subj"], e["obj"], e["verb"]
    tail = f" in {e['place']}" + (f" on {e['day']}" if day else "")
    return f"{subj} did not {base} {obj}{tail}" if negate else f"{subj} {past} {obj}{tail}"


def _cb_embedded(rng: random.Random, label: str) -> tuple[list[str], str]:
    """A speaker's verb commits (or not) to a clause; the hypothesis is the clause or its negation."""
    e = _cb_event(rng)
    negate = rng.random() < 0.5
    # entailment: a true clause as stated or a false one negated; contradiction: the other two
    committed = "true" if (label == "entailment") != negate else "false"
    kind = "open" if label == "neutral" else committed
    speaker = rng.choice(SPEAKERS)
    verb = rng.choice(COMMITMENT[kind])
    day = rng.random() < 0.5
    premise = [tidy(f"{speaker} {verb} {_clause(e, day=day)}.")]
    other = _cb_event(rng)  # a distractor claim by someone else, with its own commitment
    if rng.random() < 0.7:
        who = rng.choice([s for s in SPEAKERS if s != speaker])
        premise.append(tidy(f"{who} {rng.choice(COMMITMENT[rng.choice(sorted(COMMITMENT))])} "
                            f"{_clause(other, day=rng.random() < 0.5)}."))
    rng.shuffle(premise)
    return premise, tidy(_clause(e, day=day, negate=negate) + ".")


def _cb_fact(rng: random.Random, label: str) -> tuple[list[str], str]:
    """Plain statements of two or three events; the hypothesis follows, contradicts or goes beyond one."""
    events = [_cb_event(rng) for _ in range(rng.choice([2, 3]))]
    e = events[0]
    general = rng.random() < 0.25  # the premise names the general kind ("a dog")
    day_stated = rng.random() < 0.6
    (s_spec, s_gen), (o_spec, o_gen), (base, past, pp) = e["subj"], e["obj"], e["verb"]
    subj = s_gen if general else s_spec
    said = [tidy(f"{subj} {past} {o_spec} in {e['place']}"
                 + (f" on {e['day']}" if day_stated else "") + ".")]
    said += [tidy(_clause(x, day=rng.random() < 0.5) + ".") for x in events[1:]]
    rng.shuffle(said)
    other_day = rng.choice([d for d in WEEKDAYS if d != e["day"]])
    other_place = rng.choice([p for p in PUBLIC_PLACES if all(p != x["place"] for x in events)])
    if label == "entailment":
        kind = rng.choice(["drop", "general", "passive", "where"] + (["day"] if day_stated else []))
        hyp = {"drop": f"{subj} {past} {o_spec}.",
               "general": f"{s_gen} {past} {o_gen} in {e['place']}.",
               "passive": f"{o_spec} was {pp} by {subj} in {e['place']}.",
               "where": f"{subj} was in {e['place']}.",
               "day": f"{subj} {past} {o_spec} on {e['day']}."}[kind]
    elif label == "contradiction":
        kind = rng.choice(["place", "negate", "nowhere"] + (["day"] if day_stated else []))
        hyp = {"place": f"{subj} {past} {o_spec} in {other_place}"
                        + (f" on {e['day']}" if day_stated else "") + ".",
               "negate": f"{subj} did not {base} {o_spec}.",
               "nowhere": f"{o_spec} was never {pp} by {subj}.",
               "day": f"{subj} {past} {o_spec} in {e['place']} on {other_day}."}[kind]
    else:  # neutral: a detail the premise does not give
        options = ["reason", "also"] + (["day"] if not day_stated else []) + (
            ["specific"] if general and s_spec != s_gen else [])
        kind = rng.choice(options)
        someone = rng.choice([p for p in MORE_PEOPLE if all(p != x["subj"] for x in events)])
        hyp = {"reason": f"{subj} {past} {o_spec} {rng.choice(REASONS)}.",
               "also": f"{someone[0]} {past} {o_spec} in {e['place']} as well.",
               "day": f"{subj} {past} {o_spec} in {e['place']} on {e['day']}.",
               "specific": f"{s_spec} {past} {o_spec} in {e['place']}."}[kind]
    return said, tidy(hyp)


def cb(rng: random.Random, label: str) -> dict[str, object]:
    """Half the time a speaker's commitment decides; half the time the stated facts do."""
    make = _cb_embedded if rng.random() < 0.5 else _cb_fact
    premise, hypothesis = make(rng, label)
    return {"premise": " ".join(premise), "hypothesis": hypothesis, "label": label}


MAKERS: dict[str, tuple[Callable[[random.Random, Any], dict[str, object]], list[Any]]] = {
    "boolq": (boolq, [True, False]),
    "rte": (rte, ["entailment", "not_entailment"]),
    "copa": (copa, [0, 1]),
    "cb": (cb, ["entailment", "contradiction", "neutral"]),
}
#: Split sizes where a task differs from SPLITS: CB has more training examples (for Dirichlet
#: splits over several clients) and a larger test set (tighter intervals on pooled scores).
TASK_SPLITS = {"cb": {"train": 3000, "validation": 300, "test": 600}}


def build_task(seed: int, task: str) -> dict[str, str]:
    """Files of one task: balanced labels, no example repeated within or across splits."""
    make, labels = MAKERS[task]
    rng = rng_for(seed, "superglue", task)
    seen: set[str] = set()
    files = {}
    for split, n in TASK_SPLITS.get(task, SPLITS).items():
        want = [labels[i % len(labels)] for i in range(n)]
        rng.shuffle(want)
        records = []
        for idx, label in enumerate(want):
            while True:
                rec = make(rng, label)
                key = repr(sorted((k, v) for k, v in rec.items() if k != "label"))
                if key not in seen:
                    seen.add(key)
                    break
            records.append({**rec, "idx": idx})
        files[f"{task}/{split}.jsonl"] = to_jsonl(records)
    return files


def build(seed: int) -> dict[str, str]:
    """All files of superglue except the datasheet."""
    return {k: v for task in TASKS for k, v in build_task(seed, task).items()}
