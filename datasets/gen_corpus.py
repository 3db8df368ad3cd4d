"""public_corpus: varied synthetic English in twelve domains (four in gen_corpus_extra.py).

Text comes from hand-written grammars (templates with slots filled from word lists). No person
is named anywhere: people appear only as generic roles ("the head coach", "a local baker").
The place names are invented and deliberately disjoint from the clinic_notes city list.
"""

from __future__ import annotations

import random

from gen_common import Grammar, bind, expand, ordered, pick, rng_for, sentence, words
import gen_corpus_extra
import gen_medical
from gen_facts import HOWTO_TASKS, SCIENCE_TOPICS
from gen_lexicon import (ACTIVITIES, COMMON, FEELINGS, FRUITS, INSTRUMENTS, JOBS, OBJECTS,
                         PUBLIC_PLACES)

NUM_SHARDS = 56
DOCS_PER_SHARD = 200
VALIDATION_EVERY = 50  # document i of a shard is held out when i % 50 == 0: 2 %

NEWS: Grammar = {
    **COMMON,
    "body": words(
        "town council|planning committee|school board|regional transport authority|harbour trust|"
        "parks committee|county assembly|district council|water board|library trust"
    ),
    "project": words(
        "the repair of the old stone bridge|a new bus route to the hospital|longer opening hours "
        "at the central library|stronger flood defences along the river|a second primary school "
        "on the east side|the restoration of the covered market|a network of protected cycle "
        "lanes|a weekly collection of food waste|two hundred affordable homes near the station|a "
        "new skate park beside the lake|solar panels on every public building|free swimming "
        "lessons for older residents|a pedestrian zone around the cathedral square|a community "
        "orchard on unused land|faster broadband for outlying villages|a covered bicycle park at "
        "the railway station|new street lighting on the coast road|a youth centre in the old fire "
        "station|wider pavements along the high street|a ferry link across the estuary"
    ),
    "official": words(
        "the council leader|a senior planning officer|the chair of the committee|the finance "
        "director|a spokesperson for the authority|the deputy mayor|the project manager|the "
        "head of public works"
    ),
    "critic": words(
        "One local shopkeeper|A group of residents|The opposition spokesperson|A retired "
        "engineer who lives nearby|The chair of the neighbourhood association|A campaign group"
    ),
    "benefit": words(
        "make journeys safer for children walking to school|bring more visitors into the town "
        "centre|cut running costs within a few years|protect hundreds of homes from flooding|give "
        "young people somewhere to go in the evenings|reduce traffic on the busiest streets|help "
        "small businesses that have struggled since the factory closed|lower energy bills for "
        "public buildings"
    ),
    "worry": words(
        "the cost would rise once work began|parking would become even harder|the consultation "
        "had been too short|older residents had not been properly asked|the money would be better "
        "spent on road repairs|construction noise would drive customers away|the timetable was "
        "unrealistic"
    ),
    "sentiment": words("broadly supportive|cautiously positive|sharply divided|strongly in favour"),
    "funding": words(
        "a national infrastructure grant|the council's own reserves|a local business levy|a "
        "lottery heritage fund|money set aside after last year's budget review|a regional "
        "development loan"
    ),
    "money": lambda r: f"{r.randrange(2, 90)} million" if r.random() < 0.6
    else f"{r.randrange(150, 990, 10)} thousand",
    "weather_event": words(
        "heavy rain|strong winds|a late frost|thick fog|a summer heatwave|a sudden snowfall|a "
        "thunderstorm|high tides"
    ),
    "disruption": words(
        "closed the coast road for several hours|brought down power lines near the ring road|"
        "delayed trains on the northern line|flooded the car park behind the market|forced the "
        "cancellation of the weekend fair|left several schools without heating|damaged the roof "
        "of the sports hall"
    ),
    "company": words(
        "a family-owned bakery|the town's largest employer, a packaging firm|a small software "
        "company|a furniture workshop|a regional bus operator|a fishing cooperative|an "
        "independent brewery|a bicycle manufacturer"
    ),
    "biz_news": words(
        "announced plans to hire {mid} new staff|reported its best year in a decade|opened a "
        "second site on the industrial estate|said it would move part of its production abroad|"
        "won a contract to supply schools across the region|cut its opening hours to save money"
    ),
    "s_civic": words(
        "The {body} in {place} has approved {project}, ending {small} months of debate.|Members "
        "of the {body} voted {mid} to {small} on {weekday} evening to back {project}.|The work is "
        "expected to cost about {money} and should take {small} months to complete.|{official} "
        "said the scheme would {benefit}.|Not everyone is pleased. {critic} warned that {worry}."
        "|A public consultation last {season} drew more than {big} responses, most of them "
        "{sentiment}.|Construction is due to begin in {month}, weather permitting.|Funding will "
        "come partly from {funding} and partly from {funding}.|Similar plans in {place} were "
        "dropped after costs doubled, a point raised several times during the debate.|Residents "
        "can read the full proposal at the town hall or on the council website.|The next meeting "
        "of the {body} is set for the first {weekday} in {month}.|\"We have listened carefully "
        "and we think this is the right balance,\" said {official}.|{critic} said they would keep "
        "pressing for changes before the final design is signed off."
    ),
    "s_weather": words(
        "{weather_event} {disruption} in {place} on {weekday}.|Forecasters said the conditions "
        "would ease by the end of the week, although more {weather_event} is possible.|Emergency "
        "crews worked through the night, and no serious injuries were reported.|Drivers were "
        "asked to avoid the area and to allow extra time for their journeys.|The last time "
        "{place} saw weather like this was in {year}, according to local records.|Volunteers "
        "handed out hot drinks at the community centre while repairs went on.|Several farms "
        "reported damage to crops and fences.|The council said roads would be checked and "
        "reopened one at a time."
    ),
    "s_business": words(
        "In {place}, {company} {biz_news}.|The owners said demand had grown steadily since "
        "{season} and they expected it to keep rising.|Union representatives welcomed the news "
        "but asked for more detail about working hours.|The firm was founded in {year} and now "
        "employs about {big} people.|Local leaders described the announcement as a vote of "
        "confidence in the town.|Some analysts were more cautious, pointing to rising energy and "
        "transport costs.|The company will hold an open day in {month} for people interested in "
        "applying."
    ),
}

SCIENCE: Grammar = {
    **COMMON,
    "open": words(
        "Have you ever wondered {q}?|A reader asked us to explain {q}.|This week's explainer "
        "looks at {q}.|It is one of the most common questions children ask: {q}.|Here is a short "
        "guide to {q}."
    ),
    "extra": words(
        "Scientists first studied this carefully in the {century} century.|The idea is simple, "
        "but the details took researchers many years to work out.|You can see the same principle "
        "at work in everyday objects around the house.|Measurements from satellites and "
        "laboratories have confirmed the picture again and again.|There are still open questions, "
        "and researchers continue to test new ideas.|A simple experiment at home can show the "
        "effect: {experiment}.|Teachers often use a diagram here, because a picture makes the "
        "steps much clearer.|It is a good example of how a small change in conditions can have a "
        "large effect."
    ),
    "century": words("seventeenth|eighteenth|nineteenth|twentieth"),
    "experiment": words(
        "fill a clear glass with water and shine a torch through it|watch how a drop of food "
        "colouring spreads in warm and cold water|leave two slices of bread in different places "
        "and compare them after a week|rub a balloon on a wool jumper and hold it near small "
        "pieces of paper|put a bowl of water in the freezer and mark the level before and after"
    ),
    "close": words(
        "Next time you notice it, you will know what is going on.|In short, a few simple rules "
        "explain something we see every day.|Understanding this helps us make sense of the wider "
        "natural world.|It is a reminder that ordinary things can hide remarkable science."
    ),
}

RECIPE: Grammar = {
    **COMMON,
    "veg": words(
        "carrots|leeks|sweet potatoes|chickpeas|red lentils|spinach|mushrooms|courgettes|cherry "
        "tomatoes|red peppers|aubergine|cauliflower|broccoli|pumpkin|beetroot|fennel|savoy "
        "cabbage|frozen peas|green beans|red onions|parsnips|butternut squash|kale|celeriac"
    ),
    "protein": words(
        "chicken thighs|salmon fillets|firm tofu|free-range eggs|beef mince|lamb shoulder|king "
        "prawns|white beans|halloumi|smoked haddock|pork sausages|black beans|paneer|turkey breast"
    ),
    "herb": words("parsley|coriander|basil|thyme|rosemary|dill|mint|sage|chives|oregano|tarragon"),
    "spice": words(
        "ground cumin|smoked paprika|turmeric|cinnamon|chilli flakes|ground ginger|nutmeg|fennel "
        "seeds|black pepper|garam masala|coriander seeds|mustard seeds|allspice"
    ),
    "grain": words(
        "basmati rice|couscous|pearl barley|quinoa|orzo|egg noodles|spaghetti|polenta|bulgur "
        "wheat|crusty bread|flatbreads|brown rice"
    ),
    "dish": words("stew|soup|traybake|salad|curry|pie|bake|stir-fry|risotto|gratin|hash|frittata"),
    "style": words("smoky|spiced|creamy|zesty|rustic|herby|warming|quick|one-pan|golden|hearty"),
    "oil": words("olive oil|rapeseed oil|butter|sunflower oil|coconut oil"),
    "pan": words("large saucepan|heavy casserole dish|wide frying pan|deep roasting tin|wok"),
    "heat": words("low|medium|medium-high|gentle"),
    "liquid": words(
        "vegetable stock|chicken stock|coconut milk|passata|water|single cream|dry cider|milk"
    ),
    "done": words(
        "soft and golden|just tender|lightly charred|glossy and thick|bubbling at the edges|"
        "cooked through|starting to caramelise"
    ),
    "intro": words(
        "This {style} {veg} and {protein} {dish} is ideal for a busy {weekday} evening.|Our "
        "{style} {dish} makes the most of {veg} when they are in season in {season}.|A {style} "
        "{dish} that feeds {small} people and only needs one pan.|This recipe turns a few "
        "cupboard staples and some {veg} into a {style} {dish}.|Comforting and cheap, this {dish} "
        "with {protein} and {herb} is a family favourite."
    ),
    "need": words(
        "You will need {mid}0 grams of {protein}, {small} handfuls of {veg}, a tablespoon of "
        "{spice}, {liquid} and a small bunch of {herb}.|For this you need {veg}, {protein}, "
        "{spice}, {grain} to serve, and fresh {herb}.|Gather {veg}, {small} cloves of garlic, "
        "{spice}, {protein} and about {big} millilitres of {liquid}."
    ),
    "step": words(
        "Heat a splash of {oil} in a {pan} over {heat} heat.|Add the {veg} and cook for {small} "
        "minutes, stirring now and then, until {done}.|Stir in the {spice} and cook for another "
        "minute until fragrant.|Pour in the {liquid} and bring everything to a gentle simmer.|"
        "Season with salt and black pepper, then taste and adjust.|Meanwhile, cook the {grain} "
        "according to the packet instructions.|Add the {protein} and cook for {mid} minutes until "
        "{done}.|Preheat the oven to {oven} degrees and line a tray with baking paper.|Roast for "
        "{mid} minutes, turning once halfway through.|Cover with a lid and leave to bubble for "
        "{mid} minutes.|Chop the {herb} finely and set it aside for the end.|Crush {small} "
        "cloves of garlic and fry them briefly, taking care they do not burn."
    ),
    "oven": words("180|190|200|210|220"),
    "serve": words(
        "Scatter over the {herb} and serve with {grain}.|Serve hot, with {grain} on the side and "
        "a squeeze of lemon.|Spoon into warm bowls and finish with a drizzle of {oil}.|Leave to "
        "rest for five minutes before serving with {grain}."
    ),
    "tip": words(
        "Leftovers keep in the fridge for up to {small} days.|You can swap the {protein} for "
        "{protein} if you prefer.|It freezes well, so it is worth making a double batch.|For more "
        "heat, add a pinch of chilli with the {spice}.|If it looks too thick, loosen it with a "
        "little more {liquid}."
    ),
}

TRAVEL: Grammar = {
    **COMMON,
    "setting": words(
        "on a sheltered bay at the mouth of a slow river|high on a ridge above a patchwork of "
        "fields|beside a long freshwater lake|at the edge of a wide salt marsh|among steep wooded "
        "hills|on a rocky headland facing the open sea|in a broad valley of vineyards and orchards"
    ),
    "transport": words("train|coach|ferry|car|bicycle|bus"),
    "best": words(
        "late spring, when the meadows are full of flowers|early autumn, when the crowds have gone"
        "|midsummer, when the evenings stay light until late|winter, when the harbour is quiet and "
        "the cafes are warm"
    ),
    "sight": words(
        "the old lighthouse|the covered market|the ruined abbey|the botanical garden|the harbour "
        "wall|the clock tower|the maritime museum|the stone circle on the hill|the tidal pools|the "
        "sculpture trail|the cathedral cloisters|the waterfall walk|the glassworks"
    ),
    "sight_desc": words(
        "which has views across the whole coast|where local craftspeople still work|which is free "
        "to visit on the first {weekday} of the month|which dates back to around {year}|best "
        "seen early in the morning|which hosts small concerts in the {season}"
    ),
    "food": [f"{f} tart" for f in FRUITS] + words(
        "grilled fish with samphire|warm apple cake|a bowl of mussels cooked in cider|thick bean "
        "soup|flatbread baked in a wood oven|smoked cheese on toasted rye|lemon tart|slow-cooked "
        "lamb with barley"
    ),
    "eatery": words("cafes|small restaurants|market stalls|harbour kiosks|family-run inns"),
    "lodging": words(
        "guesthouses|campsites|rooms above the pubs|a youth hostel|self-catering cottages"
    ),
    "s": words(
        "{here} sits {setting}, about {mid} kilometres from {place}.|Most visitors arrive by "
        "{transport}, and the journey itself is part of the pleasure.|The best time to visit is "
        "{best}.|Do not miss {sight}, {sight_desc}.|For lunch, try {food} at one of the {eatery} "
        "near {sight}.|A {mid}-minute walk from the centre brings you to {sight}.|Budget "
        "travellers will find {lodging} from about {mid} a night.|The town is small enough to "
        "explore on foot in a single day, but many people stay for a week.|Bring good shoes: the "
        "lanes are steep and the cobbles can be slippery after rain.|On {weekday} mornings a "
        "market fills the main square with fruit, bread and flowers.|If you have a spare "
        "afternoon, hire a bicycle and follow the old railway path toward {place}.|In the evening"
        ", the light over the water is worth staying up for.|Book ahead in {month}, when the "
        "annual festival brings thousands of visitors.|Locals are proud of {sight}, and most are "
        "happy to point you in the right direction."
    ),
}

SPORT: Grammar = {
    **COMMON,
    "mascot": words(
        "Rovers|Harriers|United|Athletic|Wanderers|Falcons|Ravens|Mariners|Rangers|Comets|Otters"
    ),
    "player": words(
        "their captain|a young midfielder|the veteran striker|the substitute|their left back|the "
        "goalkeeper|a teenage winger|the club's top scorer|a new signing"
    ),
    "score_how": words(
        "curled a shot into the far corner|headed in from a corner|finished off a quick "
        "counter-attack|converted a penalty|scrambled the ball over the line|struck a low drive "
        "from outside the area"
    ),
    "coach_quote": words(
        "the players had shown real character|the first half had not been good enough|the "
        "squad was finally getting fitter|they would take each game as it comes|the supporters "
        "had been the difference|the referee had made some strange decisions"
    ),
    "ground": words(
        "Mill Lane|the Riverside Stadium|Harbour Park|the Memorial Ground|Station Road|the Meadow"
    ),
    "pos": words("second|third|fourth|fifth|sixth|bottom|top|ninth"),
    "s": words(
        "{home} beat {away} {goals} to {less} on {weekday} in front of {big} supporters at "
        "{ground}.|The visitors started brightly and hit the post inside {small} minutes.|The "
        "breakthrough came after {mid} minutes when {player} {score_how}.|{player} {score_how} "
        "shortly after half-time to double the lead.|The head coach said afterwards that "
        "{coach_quote}.|The result leaves {home} {pos} in the table, {small} points behind the "
        "leaders.|{away} pulled one back late on, but it was too little, too late.|It was the "
        "first win at {ground} since {month}, and the celebrations went on long after the "
        "whistle.|Rain fell throughout the second half, making the pitch heavy and the passing "
        "difficult.|{home} travel to {place} next {weekday} for a cup tie.|An injury to {player} "
        "will be assessed early next week.|The match was held up for several minutes after a "
        "floodlight failure.|In the women's league, the {mascot} of {place} extended their "
        "unbeaten run to {small} games."
    ),
    "goals": words("three|two|four|five"),
    "less": words("one|nil"),
}

HEALTH: Grammar = {
    **COMMON,
    "topic": words(
        "getting a good night's sleep|staying hydrated in hot weather|looking after your back|"
        "hay fever|the common cold|keeping blood pressure in check|washing your hands properly|"
        "protecting your skin from the sun|eating more fibre|starting to exercise again|"
        "understanding cholesterol|managing stress|caring for a sprained ankle|looking after your "
        "teeth"
    ),
    "pro": words("a pharmacist|your family doctor|a practice nurse|a physiotherapist|a dietitian"),
    "advice": words(
        "aim for seven to nine hours of sleep and keep a regular bedtime|drink water regularly "
        "through the day rather than all at once|take short breaks from sitting every half hour|"
        "wash your hands for at least twenty seconds with soap|include vegetables, beans or whole "
        "grains in most meals|build up activity slowly, adding a few minutes each week|use sun "
        "cream and wear a hat in the middle of the day|keep screens out of the bedroom|rest a "
        "sprain, apply a cold pack and raise the limb|brush twice a day and clean between your "
        "teeth"
    ),
    "sign": words(
        "a fever that lasts more than a few days|sudden chest pain|difficulty breathing|a rash that "
        "does not fade when pressed|pain that keeps getting worse|dizziness or fainting|blood in "
        "your urine|a cough lasting more than three weeks"
    ),
    "s": words(
        "This guide covers {topic}.|Small habits make a big difference when it comes to {topic}.|"
        "Most people can {advice}.|Experts suggest you {advice}.|If you are unsure, ask {pro} for "
        "advice.|Seek urgent help if you notice {sign}.|Over-the-counter remedies can ease "
        "symptoms, but read the label and do not exceed the stated dose.|Antibiotics do not work "
        "against viruses, so they will not cure a cold.|Regular check-ups can catch problems "
        "early, before they cause symptoms.|People with long-term conditions such as asthma or "
        "diabetes may need tailored advice.|It can take {small} weeks for a new routine to feel "
        "natural, so be patient.|Keeping a simple diary can help you spot patterns.|Children and "
        "older adults are often more vulnerable, so keep a closer eye on them.|Do not stop taking "
        "a prescribed medicine without talking to {pro} first."
    ),
}

HOWTO: Grammar = {
    **COMMON,
    "open": words(
        "This step-by-step guide shows you how to {task}.|Learning how to {task} can save you "
        "time and money.|It is easier than you might think to {task}.|Here is how to {task} in "
        "an afternoon."
    ),
    "tools": words(
        "a screwdriver|an old towel|a pair of gloves|a bucket|a tape measure|a pencil|a torch|a "
        "small brush|a notebook|a sponge|a spanner"
    ),
    "prep": words(
        "Before you start, gather {tools}, {tools} and {tools}.|You will not need much: {tools} "
        "and {tools} are usually enough.|Set aside about {mid} minutes and clear some space to "
        "work."
    ),
    "link": ["Next,", "Then", "After that,", "Now", "Once that is done,", ""],
    "tip": words(
        "If something does not fit, stop and check rather than forcing it.|Take a photo before "
        "you take anything apart, so you can remember how it goes back.|Work slowly; most "
        "mistakes happen when people rush.|If you are not confident, ask a friend who has done "
        "it before.|Keep small parts in a cup so they do not roll away."
    ),
}

STORY: Grammar = {
    **COMMON,
    "hero": [f"a {j}" for j in JOBS] + words(
        "an old fisherman|a young girl|a tired baker|the lighthouse keeper|a shy boy|a retired "
        "teacher|a small grey cat|a clever fox|a travelling musician|a night-shift nurse|a "
        "stubborn goat|the village postwoman|a curious crow"
    ),
    "trait": words(
        "never left home without a battered umbrella|talked to the sea every morning|was afraid "
        "of the dark|collected buttons in a tin|could not resist a puzzle|hummed the same tune "
        "all day|had not spoken to a neighbour in years|dreamed of seeing the mountains"
    ),
    "setting": words(
        "a crooked house at the end of a muddy lane|a village where the wind never stopped|a "
        "busy town beside a grey river|a farm on the edge of the moor|a narrow street of "
        "bakeries and bookshops|a cottage in a valley full of mist"
    ),
    "found": [f"a battered {o}" for o in OBJECTS] + words(
        "a brass key|a letter with no name on it|a map drawn in faded ink|a lost dog with one "
        "white ear|a wooden box that hummed|a seed that glowed faintly|a broken compass|an "
        "envelope full of old photographs"
    ),
    "where": words(
        "under the floorboards|on the doorstep|at the bottom of the well|inside a hollow tree|in "
        "the pocket of an old coat|behind the bakery ovens|on the beach after a storm"
    ),
    "time": words("morning|evening|night|afternoon|winter morning|rainy afternoon"),
    "journey": words(
        "set off along the coast road|climbed the hill behind the church|followed the river "
        "upstream|asked everyone in the market|waited by the harbour for three days|walked all "
        "the way to {far_place}"
    ),
    "obstacle": words(
        "a storm rolled in from the sea|the bridge had been washed away|a grumpy ferryman refused "
        "to help|night fell sooner than expected|the path split into three|a fierce dog blocked "
        "the gate"
    ),
    "turn": words(
        "a stranger offered a lantern and a piece of advice|the answer turned out to have been "
        "at home all along|an old friend appeared with a boat|the key fitted a door nobody had "
        "noticed before|the whole village came out to help"
    ),
    "fruit": FRUITS, "instrument": INSTRUMENTS, "feeling": FEELINGS, "activity": ACTIVITIES,
    "aside": words(
        "At first the {hero_short_w} felt {feeling}, then simply {feeling}.|That evening the "
        "{hero_short_w} sat {activity}, thinking it over.|Somewhere a neighbour was {activity}, "
        "as if nothing had happened.|The {hero_short_w} packed bread, a {fruit} and a small "
        "{instrument} for the road.|Along the way the {hero_short_w} met a {job} who was "
        "{activity}.|For a long time the {hero_short_w} sat there, {feeling} and quiet."
    ),
    "job": JOBS,
    "ending": words(
        "From then on, {hero_short} never felt quite so alone.|And every {season} after that, "
        "the {found_short} sat on the windowsill as a reminder.|Some say the story is still told "
        "in {place} to this day.|It was, everyone agreed, the strangest {season} anyone could "
        "remember.|In the end, {hero_short} learned that kindness travels further than any road."
    ),
}


def _news(rng: random.Random) -> str:
    kind = rng.choice(["s_civic", "s_civic", "s_weather", "s_business"])
    g = bind(rng, NEWS, ["place", "body", "project", "official", "company", "weather_event"])
    return ordered(rng, g, NEWS[kind], 4, 8)


def _science(rng: random.Random) -> str:
    topic = rng.choice(sorted(SCIENCE_TOPICS))
    facts = SCIENCE_TOPICS[topic]
    g = {**SCIENCE, "q": [topic]}
    out = [sentence(rng, g, "{open}")]
    keep = sorted(pick(rng, list(range(len(facts))), rng.randrange(3, 6)))
    out += [facts[i] for i in keep]
    out += [sentence(rng, g, t) for t in pick(rng, SCIENCE["extra"], rng.randrange(1, 3))]
    out.append(sentence(rng, g, "{close}"))
    return " ".join(out)


def _recipe(rng: random.Random) -> str:
    g = bind(rng, RECIPE, ["veg", "protein", "herb", "spice", "grain", "dish", "style", "liquid"])
    out = [sentence(rng, g, "{intro}"), sentence(rng, g, "{need}")]
    steps = RECIPE["step"]
    keep = sorted(pick(rng, list(range(len(steps))), rng.randrange(4, 8)))
    out += [sentence(rng, g, steps[i]) for i in keep]
    out += [sentence(rng, g, "{serve}"), sentence(rng, g, "{tip}")]
    return " ".join(out)


def _travel(rng: random.Random) -> str:
    here = rng.choice(PUBLIC_PLACES)
    g = {**TRAVEL, "here": [here], "place": [p for p in PUBLIC_PLACES if p != here]}
    return ordered(rng, g, TRAVEL["s"], 5, 9)


def _sport(rng: random.Random) -> str:
    home, away = pick(rng, PUBLIC_PLACES, 2)
    g = bind(rng, SPORT, ["ground"])
    g["home"] = [f"{home} {rng.choice(SPORT['mascot'])}"]
    g["away"] = [f"{away} {rng.choice(SPORT['mascot'])}"]
    return ordered(rng, g, SPORT["s"], 5, 9)


def _health(rng: random.Random) -> str:
    g = bind(rng, HEALTH, ["topic"])
    return ordered(rng, g, HEALTH["s"], 5, 9)


def _howto(rng: random.Random) -> str:
    task = rng.choice(sorted(HOWTO_TASKS))
    g = {**HOWTO, "task": [task]}
    out = [sentence(rng, g, "{open}"), sentence(rng, g, "{prep}")]
    steps = HOWTO_TASKS[task]
    for i, step in enumerate(steps):
        link = "First," if i == 0 else "Finally," if i == len(steps) - 1 else expand(rng, g, "{link}")
        out.append(f"{link} {step[0].lower()}{step[1:]}" if link else step)
    out.append(sentence(rng, g, "{tip}"))
    return " ".join(out)


def _story(rng: random.Random) -> str:
    g = bind(rng, STORY, ["hero", "found", "setting", "place"])
    g["far_place"] = [p for p in PUBLIC_PLACES if p != g["place"][0]]
    hero_word = g["hero"][0].split()[-1]
    found_word = g["found"][0].split(" ", 1)[1]
    g = {**g, "hero_short": [f"the {hero_word}"], "found_short": [found_word]}
    parts = [
        "Once, in {setting}, there lived {hero} who {trait}.",
        "One {time}, the {hero_short_w} found {found} {where}.",
        "Nobody in {place} could say where it had come from.",
        *(["{aside}"] if rng.random() < 0.7 else []),
        "So the {hero_short_w} {journey}.",
        *(["{aside}"] if rng.random() < 0.5 else []),
        "But {obstacle}, and for a while it seemed hopeless.",
        "Then {turn}.",
        "{ending}",
    ]
    g["hero_short_w"] = [hero_word]
    return " ".join(sentence(rng, g, p) for p in parts)


DOMAINS = [_news, _science, _recipe, _travel, _sport, _health, _howto, _story,
           *gen_corpus_extra.DOMAINS]


def shard_documents(seed: int, shard: int) -> list[str]:
    """The ``DOCS_PER_SHARD`` documents of one shard (one line each, no newlines inside)."""
    rng = rng_for(seed, "public_corpus", shard)
    return [rng.choice(DOMAINS)(rng) for _ in range(DOCS_PER_SHARD)]


def split_shard(docs: list[str]) -> tuple[list[str], list[str]]:
    """(train, validation) documents of one shard."""
    train = [d for i, d in enumerate(docs) if i % VALIDATION_EVERY]
    validation = [d for i, d in enumerate(docs) if i % VALIDATION_EVERY == 0]
    return train, validation


def build(seed: int) -> dict[str, str]:
    """All files of public_corpus except the datasheet: ``{relative path: text}``.

    A document equal to an earlier one (in shard order, train before validation within a
    shard) is dropped, so no document repeats within or across the two files. The public
    medical text of :mod:`gen_medical` is added as ``medical_train.txt`` and
    ``medical_validation.txt``.
    """
    train: list[str] = []
    validation: list[str] = []
    seen: set[str] = set()
    for shard in range(NUM_SHARDS):
        t, v = split_shard(shard_documents(seed, shard))
        for docs, out in ((t, train), (v, validation)):
            for doc in docs:
                if doc not in seen:
                    seen.add(doc)
                    out.append(doc)
    # The public medical text (gen_medical.py) goes in files of its own, which the tokenizer
    # trainer does not read: the shipped tokenizer stays byte-identical.
    return {"train.txt": "\n".join(train) + "\n", "validation.txt": "\n".join(validation) + "\n",
            **gen_medical.build(seed)}
