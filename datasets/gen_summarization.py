"""summarization: short synthetic news articles in the CNN/DailyMail schema (article, highlights, id).

Each article opens with a background sentence (not a key fact), then states the key facts in a
random order among quotes and filler. The highlights restate the key facts in a fixed, compressed
form, one per line, as in CNN/DailyMail; so copying the lead sentence scores poorly and a model
has to learn to find and compress the facts.
"""

from __future__ import annotations

import hashlib
import random

from gen_common import Grammar, bind, integer, pick, rng_for, sentence, to_jsonl, words
from gen_corpus import NEWS, SPORT
from gen_lexicon import PUBLIC_PLACES

SPLITS = {"train": 1600, "validation": 200, "test": 200}

BASE: Grammar = {
    "place": PUBLIC_PLACES,
    "weekday": words("Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"),
    "month": words("January|February|March|April|May|June|July|August|September|October|"
                   "November|December"),
    "n_small": integer(2, 9),
    "n_mid": integer(12, 90),
    "n_big": integer(150, 900, 10),
    "filler": words(
        "The news was shared widely on local social media within hours.|Several people at the "
        "scene said they had never seen anything like it.|It is the latest in a series of "
        "changes in the area over the past year.|Local radio carried live updates through the "
        "afternoon.|Officials said more details would be published next week.|Many residents "
        "said they were waiting to see what happens next."
    ),
}

# Per story kind: bound slots, background sentences, fact sentences (each one key fact),
# other sentences, and the highlight lines (one per fact group, in a fixed order).
KINDS: dict[str, dict[str, list[str]]] = {
    "council": {
        "bind": ["place", "body", "project", "money", "vote_for", "vote_against", "month"],
        "lead": ["For years, people in {place} have argued about what the town needs most.",
                 "It has been a long and sometimes bitter debate in {place}."],
        "facts": ["The {body} approved {project} at a meeting on {weekday}.",
                  "The scheme is expected to cost about {money}.",
                  "Members voted {vote_for} to {vote_against} in favour.",
                  "Work is due to start in {month}."],
        "other": ["A spokesperson said the decision had not been taken lightly.",
                  "Opponents said they would keep campaigning for changes.",
                  "A similar plan in {other_place} was dropped in {month} after costs doubled.",
                  "More than {n_big} residents responded to a consultation last year.",
                  "The meeting ran for over {n_small} hours and was broadcast online.",
                  "Councillors first discussed the idea {n_small} years ago."],
        "highlights": ["{place} {body} approves {project}.",
                       "Plan will cost about {money}; work starts in {month}.",
                       "Vote was {vote_for} to {vote_against}."],
    },
    "business": {
        "bind": ["place", "company", "jobs", "site", "month"],
        "lead": ["Times have been hard for employers in {place}.",
                 "The industrial estate on the edge of {place} has seen better days."],
        "facts": ["{company_cap} announced it will create {jobs} new jobs.",
                  "The firm is opening {site} in {place}.",
                  "Recruitment will begin in {month}."],
        "other": ["The company said demand had grown steadily.",
                  "Union representatives welcomed the announcement.",
                  "The firm already employs about {n_big} people across the region.",
                  "A rival business closed its {place} branch in {month}, with {n_mid} job losses.",
                  "Local leaders called it a vote of confidence in the town.",
                  "Some analysts warned that rising energy costs could slow expansion."],
        "highlights": ["{company_cap} to create {jobs} jobs in {place}.",
                       "Firm opening {site}; hiring starts in {month}."],
    },
    "sport": {
        "bind": ["home", "away", "goals", "less", "minute", "player", "next_place"],
        "lead": ["It had been a difficult season for {home} until this weekend.",
                 "Few supporters expected much from the match."],
        "facts": ["{home} beat {away} {goals} to {less}.",
                  "The winning goal came in the {minute} minute from {player}.",
                  "{home} play in {next_place} next week."],
        "other": ["Rain fell throughout the second half.",
                  "The head coach praised the supporters afterwards.",
                  "The visitors hit the post after {n_small} minutes.",
                  "A crowd of {n_big} watched the match.",
                  "{away} had won their previous {n_small} games.",
                  "The referee showed {n_small} yellow cards in a bad-tempered first half."],
        "highlights": ["{home} beat {away} {goals}-{less}.",
                       "Winner came from {player} in the {minute} minute.",
                       "Next match is in {next_place}."],
    },
    "weather": {
        "bind": ["place", "weather_event", "closed", "hours", "weekday"],
        "lead": ["The forecast had warned of a rough few days in {place}.",
                 "Residents of {place} are used to changeable weather."],
        "facts": ["{weather_event_cap} hit {place} on {weekday}.",
                  "The storm closed {closed} for {hours} hours.",
                  "No serious injuries were reported."],
        "other": ["Volunteers handed out hot drinks at the community centre.",
                  "Forecasters expect calmer conditions by the weekend.",
                  "The last storm of this size hit {place} {n_mid} years ago.",
                  "Power was cut to about {n_big} homes for a short time.",
                  "Drivers were asked to allow extra time for their journeys.",
                  "Emergency crews worked through the night to clear fallen trees."],
        "highlights": ["{weather_event_cap} hits {place} on {weekday}.",
                       "{closed_cap} closed for {hours} hours; no serious injuries."],
    },
    "rescue": {
        "bind": ["place", "crew", "rescued", "vessel", "minutes"],
        "lead": ["The sea off {place} can turn dangerous in minutes.",
                 "Lifeboat volunteers in {place} train every week for days like this."],
        "facts": ["The {crew} rescued {rescued} people from {vessel} near {place}.",
                  "The crew reached them within {minutes} minutes of the alarm.",
                  "All of those rescued were checked by paramedics and released."],
        "other": ["The coastguard urged visitors to check tide times.",
                  "The crew thanked local fishermen who helped with the search.",
                  "It was the station's {n_mid_ord} call-out this year.",
                  "The lifeboat station opened in {place} more than a century ago.",
                  "Winds were gusting at up to {n_mid} miles an hour at the time.",
                  "The station is run entirely by {n_mid} volunteers."],
        "highlights": ["{crew_cap} rescue {rescued} people from {vessel} near {place}.",
                       "Crew arrived within {minutes} minutes; all released after checks."],
    },
}

SLOTS: Grammar = {
    **BASE,
    "body": NEWS["body"],
    "project": NEWS["project"],
    "money": NEWS["money"],
    "vote_for": integer(6, 14),
    "vote_against": integer(1, 5),
    "company": words("a packaging firm|a family-owned bakery|a small software company|a furniture "
                     "workshop|a regional bus operator|a fishing cooperative|an independent "
                     "brewery|a bicycle manufacturer|a solar panel installer|a frozen food maker"),
    "jobs": integer(20, 400, 10),
    "site": words("a new warehouse|a second factory|a regional office|a training centre|"
                  "a distribution hub|a research workshop"),
    "goals": words("2|3|4"),
    "less": words("0|1"),
    "minute": lambda r: _ordinal(r.randrange(51, 90)),
    "n_mid_ord": lambda r: _ordinal(r.randrange(12, 60)),
    "player": SPORT["player"],
    "weather_event": words("heavy rain|strong winds|a sudden snowfall|a thunderstorm|thick fog|"
                           "a tidal surge"),
    "closed": words("the coast road|the main bridge|two primary schools|the railway line|the "
                    "ferry service|the harbour car park"),
    "hours": integer(3, 30),
    "crew": words("lifeboat crew|coastguard team|harbour patrol|volunteer inshore crew"),
    "rescued": words("two|three|four|five|six"),
    "vessel": words("a drifting yacht|a capsized dinghy|a fishing boat with engine failure|a "
                    "stranded kayak|a cabin cruiser that ran aground"),
    "minutes": integer(8, 40),
}


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _slots(rng: random.Random, kind: str) -> Grammar:
    g = bind(rng, SLOTS, KINDS[kind]["bind"] if kind != "sport" else [])
    if kind == "sport":
        home, away, nxt = pick(rng, PUBLIC_PLACES, 3)
        g = bind(rng, SLOTS, ["goals", "less", "minute", "player"])
        g["home"] = [f"{home} {rng.choice(SPORT['mascot'])}"]
        g["away"] = [f"{away} {rng.choice(SPORT['mascot'])}"]
        g["next_place"] = [nxt]
    if "place" in KINDS[kind]["bind"]:
        g["other_place"] = [p for p in PUBLIC_PLACES if p != g["place"][0]]
    for key in ("company", "weather_event", "closed", "crew"):
        if key in g and len(g[key]) == 1:
            value = g[key][0]
            g[key + "_cap"] = [value[:1].upper() + value[1:]]
    return g


def story(rng: random.Random) -> dict[str, str]:
    """One article and its highlights."""
    kind = rng.choice(sorted(KINDS))
    spec = KINDS[kind]
    g = _slots(rng, kind)
    others = pick(rng, spec["other"], rng.randrange(4, 7))
    body = spec["facts"] + others + pick(rng, BASE["filler"], rng.randrange(1, 3))
    rng.shuffle(body)
    article = [sentence(rng, g, rng.choice(spec["lead"]))]
    article += [sentence(rng, g, t) for t in body]
    highlights = [sentence(rng, g, t) for t in spec["highlights"]]
    return {"article": " ".join(article), "highlights": "\n".join(highlights)}


def build(seed: int) -> dict[str, str]:
    """All files of summarization except the datasheet."""
    rng = rng_for(seed, "summarization")
    seen: set[str] = set()
    files = {}
    for split, n in SPLITS.items():
        records: list[dict[str, str]] = []
        while len(records) < n:
            rec = story(rng)
            if rec["article"] in seen:
                continue
            seen.add(rec["article"])
            records.append({**rec, "id": hashlib.sha1(rec["article"].encode()).hexdigest()})
        files[f"{split}.jsonl"] = to_jsonl(records)
    return files
