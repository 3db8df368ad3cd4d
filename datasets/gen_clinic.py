"""clinic_notes: the kit's *private* data: templated synthetic patient notes held by four sites.

Every person is invented: a name is a random first name + last name from the lists below (lists
used nowhere else in the kit), phone numbers are in the 555-0100..555-0199 range reserved for
fiction, record numbers and dates are random, towns are invented. Each site has its own note
template, date format, specialty mix and triage mix, so the natural split is non-IID.

Triage is a rule on the note's content (documented in the datasheet): the most severe of the
presenting symptom's severity and the vital signs' severity.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from typing import Any

from gen_common import rng_for, tenths, to_jsonl, words

SPLITS = {"train": 4000, "validation": 500, "test": 500}
TRIAGE = ["routine", "urgent", "emergency"]
IDENTIFIER_TYPES = ["name", "dob", "age", "phone", "city", "mrn", "date"]
CLINICAL_TYPES = ["condition", "medication"]

FEMALE_NAMES = words(
    "Adaeze|Anneliese|Bronwen|Cosima|Dagny|Eilidh|Esperanza|Gwendolen|Ilse|Jolanta|Kasimira|"
    "Leocadia|Ludovica|Marisol|Nkechi|Noemi|Ottilie|Perpetua|Rosalind|Saoirse|Solveig|Ulrika|"
    "Valentina|Xiomara|Yevgenia|Zuleika|Beatrix|Delphine|Fenella|Philippa|Jessamy|Leopoldine|"
    "Mirela|Oriana|Sigrid|Teodora|Rosamund|Wilhelmina|Zofia|Clothilde|Elspeth|Genoveva|Ingeborg|"
    "Katarzyna|Magdalena|Niamh|Octavia|Seraphina|Vasilisa|Ximena|Yolanda|Aoife|Catriona|Dorota|"
    "Fionnuala|Honora|Henrietta|Liesel|Nuala|Olufemi"
)
MALE_NAMES = words(
    "Aurelio|Baptiste|Casimir|Desmond|Emeka|Fintan|Florian|Halvard|Ignatius|Jovan|Kwabena|"
    "Lorcan|Malachy|Mateusz|Oisin|Piran|Radomir|Severin|Tadhg|Thaddeus|Wenceslas|Zbigniew|"
    "Anselm|Cormac|Eustace|Gaspard|Isidore|Kasper|Nikolai|Pasquale|Quentin|Rasmus|Ugo|Yannick|"
    "Amadou|Benedikt|Dmitri|Feodor|Hamish|Joaquin|Lysander|Radoslav|Tobiah|Ulysses|Wolfram|"
    "Zacharias|Bartholomew|Evander|Gunnar|Idris|Konstantin|Maximilian|Auberon|Crispin|Ewan|"
    "Lazarus|Mordecai|Osric|Leofric|Torquil"
)
FIRST_NAMES = FEMALE_NAMES + MALE_NAMES
LAST_NAMES = words(
    "Abernethy|Achterberg|Adeyemi|Alvarenga|Anstruther|Babatunde|Balasubramanian|Bartoszewski|"
    "Belisario|Brennagh|Cadwallader|Castellanos|Chukwuemeka|Cieslak|Costigan|Dabrowska|Delacroix|"
    "Drummond-Hay|Dziedzic|Eberhardt|Eriksdottir|Fairweather-Lowe|Fitzmaurice|Gallagher-Rowe|"
    "Garavaglia|Gruffydd|Haverkamp|Hennessy-Blake|Iannuzzi|Ilunga|Jablonski|Jankowiak|Kavanagh|"
    "Kowalczyk|Kristiansen|Lindqvist|Lombardini|MacAulay|Maciejewski|Magnusson|Mbeki-Osei|"
    "Montgomerie|Nakashima|Nwachukwu|Oduya|Okonjo|Ostrowski|Pacheco-Ruiz|Pennycuick|Przybylski|"
    "Quigley-Ross|Radcliffe-Oyelaran|Rautenbach|Sandoval|Schellenberg|Siddiqui-Hart|Skarsgaard|"
    "Strachan|Szymanska|Tamburini|Thorvaldsen|Trevelyan|Uzoma|Vandenberghe|Vasquez-Lind|"
    "Wierzbicki|Wojcik|Yamamura|Zaborowski|Zielinski|Ashworth-Koh|Baptiste-Moreau|Cardenas|"
    "Dunleavy|Eskildsen|Ferreira-Diaz|Grzybowski|Hallorann|Ishikawa|Jaramillo|Kuczynski|Laverty|"
    "Mavromatis|Nieminen|Oyelaran|Papadakis|Quartermaine|Rosenqvist|Stojanovic|Tiernan|"
    "Underhill-Maas|Valdivia|Wachowski|Xuereb|Yilmazer|Zanetti|Ahlgren|Bogdanovic|Cathcart|"
    "Delgado-Marsh|Ekwueme|Fogarty|Gunawardena|Holmqvist|Ifeanyi|Jovanovic|Kilbride|Lachowicz|"
    "Mulcahy|Ngozi-Hart|Odhiambo|Pietrzak|Quinlivan|Rasmussen|Szabo-Kerr|Tkachenko|Urquhart"
)
CITIES = words(
    "Ambervale|Birchmouth|Castlewick|Dovecliff|Elmsworth|Fairhollow|Goldmere|Hazelcombe|Irondale|"
    "Juniper Falls|Kingsmoor|Lindenport|Maplecross|Northwold|Oxcombe|Pinehurst Vale|Ravensholt|"
    "Silverbeck|Tamberley|Upper Wroxley|Violet Bank|Willowmere|Yewhurst|Alderstone|Brackwater|"
    "Copperfold|Dunstanbury|Eldergate|Foxwell Reach|Glimmerdale|Holloway Cross|Ivyridge"
)

# Per condition: medications, then symptom phrases of severity 0 (routine), 1 (urgent), 2 (emergency).
SPECIALTIES: dict[str, dict[str, tuple[list[str], list[str], list[str], list[str]]]] = {
    "cardiology": {
        "atrial fibrillation": (
            words("apixaban|bisoprolol|edoxaban|diltiazem"),
            words("intermittent palpitations at rest|an irregular pulse noticed on a home monitor"),
            words("palpitations with light-headedness|a racing heartbeat lasting several hours"),
            words("palpitations with a sudden collapse|new slurred speech and a drooping face"),
        ),
        "stable angina": (
            words("isosorbide mononitrate|atorvastatin|bisoprolol|ranolazine"),
            words("chest tightness after heavy meals|tightness on brisk walking that settles"),
            words("chest tightness on walking fifty metres|chest pain now occurring most days"),
            words("crushing central chest pain radiating to the left arm|chest pain at rest with "
                  "sweating and vomiting"),
        ),
        "heart failure": (
            words("furosemide|sacubitril-valsartan|spironolactone|dapagliflozin"),
            words("mild ankle swelling in the evenings|breathlessness on climbing two flights"),
            words("swelling up to both knees|waking at night gasping for breath"),
            words("breathlessness at rest and unable to lie flat|frothy pink sputum and severe "
                  "breathlessness"),
        ),
        "hypertension": (
            words("amlodipine|ramipril|indapamide|losartan"),
            words("raised readings on a home blood pressure machine|occasional morning headaches"),
            words("a pounding headache with blurred vision|nosebleeds and a persistent headache"),
            words("severe headache with confusion|sudden weakness down one side"),
        ),
        "aortic stenosis": (
            words("aspirin|atorvastatin|furosemide"),
            words("tiredness on exertion|a murmur found at a yearly check-up"),
            words("dizzy spells when climbing stairs|breathlessness that has worsened over weeks"),
            words("collapse with loss of consciousness on exertion|chest pain with fainting"),
        ),
    },
    "pediatrics": {
        "acute otitis media": (
            words("amoxicillin|paracetamol suspension|ibuprofen suspension"),
            words("ear pulling and disturbed sleep|earache after a cold"),
            words("high fever and ear discharge|earache with persistent vomiting"),
            words("swelling behind the ear and drowsiness|a stiff neck and drowsiness"),
        ),
        "bronchiolitis": (
            words("nasal saline drops|paracetamol suspension"),
            words("a runny nose and mild cough|a snuffly cough but feeding well"),
            words("feeding at half the usual amount|fast breathing and fewer wet nappies"),
            words("pauses in breathing|grunting and chest wall recession at rest"),
        ),
        "asthma": (
            words("salbutamol inhaler|beclometasone inhaler|prednisolone|montelukast"),
            words("a night-time cough twice a week|wheeze after running at school"),
            words("wheeze with difficulty finishing sentences|needing the reliever every two hours"),
            words("breathlessness too severe to speak|lips turning blue during coughing spells"),
        ),
        "croup": (
            words("dexamethasone|prednisolone"),
            words("a barking cough without noisy breathing|a hoarse voice and mild cough"),
            words("noisy breathing when upset|a barking cough with a temperature"),
            words("noisy breathing at rest with drooling|marked stridor and agitation at rest"),
        ),
        "gastroenteritis": (
            words("oral rehydration solution|ondansetron"),
            words("loose stools but drinking well|mild tummy ache and two loose stools"),
            words("vomiting after every feed|reduced wet nappies and a dry mouth"),
            words("sunken eyes and floppiness|blood in the stool with lethargy"),
        ),
        "eczema": (
            words("emollient cream|hydrocortisone cream|clobetasone cream"),
            words("dry itchy patches on the elbows|rough skin behind the knees"),
            words("weeping crusted patches on the face|itching that keeps the child awake"),
            words("painful clustered blisters with fever|a rapidly spreading rash with fever"),
        ),
    },
    "oncology": {
        "breast cancer": (
            words("letrozole|tamoxifen|capecitabine|anastrozole"),
            words("mild hot flushes on treatment|aching joints since starting tablets"),
            words("a painful swollen arm on the treated side|new back pain that wakes her"),
            words("fever and shivering a week after chemotherapy|sudden leg weakness"),
        ),
        "colorectal cancer": (
            words("capecitabine|oxaliplatin|loperamide"),
            words("tingling fingers in cold weather|a mild change in bowel habit"),
            words("diarrhoea six times a day|sore hands and feet limiting walking"),
            words("fever and rigors after chemotherapy|severe abdominal pain and vomiting"),
        ),
        "lung cancer": (
            words("pembrolizumab|carboplatin|dexamethasone|osimertinib"),
            words("a dry cough that is unchanged|mild tiredness since the last cycle"),
            words("coughing up streaks of blood|increasing breathlessness over a week"),
            words("coughing up large amounts of blood|a swollen face and arms with breathlessness"),
        ),
        "lymphoma": (
            words("rituximab|prednisolone|allopurinol"),
            words("a neck lump that is shrinking|mild night sweats"),
            words("drenching night sweats and weight loss|a new lump under the arm"),
            words("fever and confusion after treatment|fever with shaking chills"),
        ),
        "prostate cancer": (
            words("bicalutamide|goserelin|tamsulosin|enzalutamide"),
            words("hot flushes on hormone treatment|passing urine more often at night"),
            words("new bone pain in the hips|difficulty passing urine"),
            words("numbness in both legs and loss of bladder control|inability to pass urine"),
        ),
    },
    "general": {
        "type 2 diabetes": (
            words("metformin|gliclazide|empagliflozin|sitagliptin"),
            words("thirst and tiredness|raised sugars on home testing"),
            words("sugars above twenty on repeated checks|a foot ulcer that is not healing"),
            words("vomiting with rapid breathing and drowsiness|confusion with very high sugars"),
        ),
        "urinary tract infection": (
            words("nitrofurantoin|trimethoprim|cefalexin"),
            words("burning when passing urine|passing urine more often"),
            words("loin pain with a temperature|burning with blood in the urine"),
            words("rigors and new confusion|loin pain with vomiting and shaking"),
        ),
        "pneumonia": (
            words("amoxicillin|doxycycline|clarithromycin"),
            words("a productive cough for a week|a cough with green sputum"),
            words("a cough with sharp pain on breathing in|fever and a cough not settling"),
            words("severe breathlessness and new confusion|breathlessness at rest and blue lips"),
        ),
        "migraine": (
            words("sumatriptan|propranolol|naproxen|topiramate"),
            words("a one-sided throbbing headache twice a month|headaches with flashing lights"),
            words("migraine attacks lasting three days|headaches now happening every other day"),
            words("the worst headache of their life, sudden in onset|headache with a stiff neck"),
        ),
        "hypothyroidism": (
            words("levothyroxine"),
            words("tiredness and feeling cold|dry skin and weight gain"),
            words("marked slowing and low mood|swelling of the face and hoarse voice"),
            words("drowsiness and marked slowness of speech|new confusion and feeling icy cold"),
        ),
        "gastro-oesophageal reflux": (
            words("omeprazole|lansoprazole|alginate liquid"),
            words("heartburn after meals|an acid taste at night"),
            words("pain on swallowing|reflux with weight loss"),
            words("vomiting blood|black tarry stools and dizziness"),
        ),
        "cellulitis": (
            words("flucloxacillin|clarithromycin|doxycycline"),
            words("a small red patch on the shin|mild redness around a cut"),
            words("redness spreading up the leg|a hot swollen leg with fever"),
            words("rapidly spreading redness with severe pain|fever and a purple blistering leg"),
        ),
    },
}

# slug: (hospital name, specialty weights, triage weights, share of records, DOB format)
SITES: dict[str, tuple[str, dict[str, int], list[int], int, str]] = {
    "northgate": ("Northgate General Hospital",
                  {"general": 55, "cardiology": 15, "oncology": 10, "pediatrics": 20},
                  [45, 30, 25], 35, "%Y-%m-%d"),
    "st_aldric": ("St Aldric Heart Institute",
                  {"cardiology": 70, "general": 25, "oncology": 5},
                  [40, 35, 25], 25, "%d/%m/%Y"),
    "bramblewood": ("Bramblewood Children's Hospital", {"pediatrics": 100},
                    [55, 30, 15], 20, "%d %b %Y"),
    "corvale": ("Corvale Cancer Centre",
                {"oncology": 75, "general": 15, "cardiology": 10},
                [60, 30, 10], 20, "%B %d, %Y"),
}

# Site note templates. {key} is filled from the record; keys in ENTITY_KEYS become spans.
TEMPLATES: dict[str, list[str]] = {
    "northgate": [
        "Patient: {name}. DOB: {dob}. MRN: {mrn}. Address: {city}. Tel: {phone}. Seen on {date} "
        "in the {specialty} clinic. {age}-year-old {sex} presenting with {symptom} for {duration}."
        "{guardian} Obs: HR {hr}, BP {bp}, T {temp}, SpO2 {spo2}%. {social} {exam} Impression: "
        "{condition}. Plan: {action} {medication} {dose}; {followup}.",
        "Patient: {name}. DOB: {dob}. MRN: {mrn}. Address: {city}. Tel: {phone}. Seen on {date}. "
        "Known {condition}. {age}-year-old {sex} with {symptom} for {duration}.{guardian} Obs: HR {hr}, BP "
        "{bp}, T {temp}, SpO2 {spo2}%. {exam} {social} Plan: {action} {medication} {dose}; "
        "{followup}.",
    ],
    "st_aldric": [
        "Name: {name} | Born: {dob} | Age: {age} | Sex: {sex_short} | Hospital no: {mrn} | Home: "
        "{city} | Contact: {phone}\nClinic date: {date}. Reason for referral: {symptom} over "
        "{duration}.{guardian} Vitals: "
        "pulse {hr} bpm, blood pressure {bp} mmHg, temperature {temp} C, oxygen saturation {spo2}%."
        " {exam} Diagnosis: {condition}. {social} Management: {action} {medication} {dose}, "
        "{followup}.",
    ],
    "bramblewood": [
        "Child: {name} ({sex}), born {dob}, aged {age}. Record {mrn}. Family lives in {city}; contact "
        "number {phone}.{guardian} Attended on {date} with {symptom} for {duration}. Heart rate "
        "{hr}, BP {bp}, temperature {temp}, sats {spo2}% in air. {social} {exam} Working "
        "diagnosis: {condition}. Plan: {action} {medication} {dose}; {followup}.",
        "Child: {name} ({sex}), born {dob}, aged {age}. Record {mrn}. Family lives in {city}; contact "
        "number {phone}.{guardian} Seen {date}. History of {symptom} for {duration}. {exam} Heart "
        "rate {hr}, BP {bp}, temperature {temp}, sats {spo2}% in air. Likely {condition}. "
        "{social} Plan: {action} {medication} {dose}; {followup}.",
    ],
    "corvale": [
        "CORVALE CANCER CENTRE - clinic letter dated {date}. Re: {name}, date of birth {dob}, "
        "unit number {mrn}, of {city}, telephone {phone}.{guardian} Diagnosis: {condition}. "
        "Today this {age}-year-old {sex} describes {symptom} for {duration}. Observations: "
        "pulse {hr}, BP {bp}, "
        "temperature {temp}, saturations {spo2}%. {exam} {social} We will {action_lower} "
        "{medication} {dose}. Follow-up: {followup}.",
    ],
}
ENTITY_KEYS = {
    "name": "name", "guardian_name": "name", "dob": "dob", "age": "age", "mrn": "mrn",
    "city": "city", "phone": "phone", "date": "date", "condition": "condition",
    "medication": "medication",
}

# Age ranges (years, at the visit) by condition, else by specialty.
AGE_RANGES = {"pediatrics": (1, 15), "bronchiolitis": (1, 1), "croup": (1, 5),
              "acute otitis media": (1, 8), "general": (19, 90), "cardiology": (38, 92),
              "oncology": (34, 88)}
DURATIONS = words("one day|two days|three days|a week|ten days|two weeks|a month|six weeks")
DOSES = words("as directed|once daily|twice daily|at the standard dose|at a reduced dose|"
              "three times daily|at night")
ACTIONS = words("start|continue|increase|restart")
FOLLOWUPS = words(
    "review in clinic in four weeks|repeat bloods in one week|letter to the family doctor|"
    "safety-netting advice given|nurse telephone review in two weeks|review with results|"
    "follow up in three months|leaflet given and questions answered"
)
SOCIAL = {
    "adult": words("No known drug allergies.|Allergic to penicillin.|Non-smoker.|Ex-smoker.|"
                   "Lives with partner.|Lives alone, independent.|Drinks little alcohol.|"
                   "Works part time.|Retired, lives with family."),
    "child": words("Immunisations up to date.|Born at term.|Attends nursery.|No known allergies."
                   "|Attends primary school.|Older sibling unwell with similar symptoms."),
}
EXAMS = {
    "cardiology": words("Heart sounds normal.|Irregularly irregular pulse.|Soft systolic murmur."
                        "|Mild pitting oedema to the ankles.|JVP not raised."),
    "pediatrics": words("Alert and interactive.|Ears: bulging red drum.|Chest: scattered wheeze."
                        "|Capillary refill under two seconds.|Throat mildly red."),
    "oncology": words("Performance status 1.|No palpable lymph nodes.|Abdomen soft.|"
                      "Port site clean.|Chest clear on auscultation."),
    "general": words("Chest clear.|Abdomen soft and non-tender.|Calves soft.|Neurologically "
                     "intact.|Mild tenderness on palpation."),
}


MONTHS = words("January|February|March|April|May|June|July|August|September|October|"
               "November|December")


def _date(day: dt.date, fmt: str) -> str:
    """``strftime`` for the four site formats, without the locale (%b / %B are locale-bound)."""
    month = MONTHS[day.month - 1]
    fmt = fmt.replace("%B", month).replace("%b", month[:3])
    return fmt.replace("%Y", f"{day.year:04d}").replace("%m", f"{day.month:02d}").replace(
        "%d", f"{day.day:02d}")


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    """One key, with probability proportional to its weight."""
    r = rng.randrange(sum(weights.values()))
    for key in sorted(weights):
        r -= weights[key]
        if r < 0:
            return key
    raise AssertionError("unreachable")


def vitals(rng: random.Random, level: int, child: bool) -> dict[str, int]:
    """Vital signs whose severity (see :func:`vitals_severity`) is exactly ``level``."""
    v = {"hr": rng.randrange(80 if child else 58, 111 if child else 101),
         "sbp": rng.randrange(95 if child else 105, 121 if child else 150),
         "temp": rng.randrange(362, 379), "spo2": rng.randrange(95, 101)}
    v["dbp"] = v["sbp"] - rng.randrange(35, 55)
    if level == 1:  # children get no hypertensive readings
        kind = rng.choice(["hr", "temp", "spo2"] if child else ["hr", "temp", "spo2", "sbp"])
        v.update({"hr": {"hr": rng.randrange(115, 131)}, "temp": {"temp": rng.randrange(386, 400)},
                  "spo2": {"spo2": rng.randrange(90, 94)},
                  "sbp": {"sbp": rng.randrange(180, 200), "dbp": rng.randrange(100, 115)}}[kind])
    elif level == 2:
        kind = rng.choice(["hr", "temp", "spo2", "sbp"])
        v.update({"hr": {"hr": rng.randrange(135, 171)}, "temp": {"temp": rng.randrange(402, 416)},
                  "spo2": {"spo2": rng.randrange(80, 90)},
                  "sbp": {"sbp": rng.randrange(70, 88), "dbp": rng.randrange(35, 50)}}[kind])
    assert vitals_severity(v) == level
    return v


def vitals_severity(v: dict[str, int]) -> int:
    """0 / 1 / 2 from the documented thresholds (temperature in tenths of a degree C)."""
    if v["spo2"] <= 89 or v["hr"] >= 131 or v["sbp"] <= 89 or v["temp"] >= 400:
        return 2
    if v["spo2"] <= 93 or v["hr"] >= 111 or v["temp"] >= 385 or v["sbp"] >= 180:
        return 1
    return 0


def _fill(template: str, values: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """Fill ``template`` and return (note, entity spans)."""
    note, pos = "", 0
    entities: list[dict[str, Any]] = []
    for m in re.finditer(r"\{([a-z_0-9]+)\}", template):
        note += template[pos:m.start()]
        text = values[m.group(1)]
        if m.group(1) in ENTITY_KEYS:
            entities.append({"type": ENTITY_KEYS[m.group(1)], "text": text,
                             "start": len(note), "end": len(note) + len(text)})
        note += text
        pos = m.end()
    note += template[pos:]
    if "{guardian}" in template and values["guardian"]:  # the guardian sentence holds a name
        prefix, _, _ = values["guardian"].partition(values["guardian_name"])
        start = note.index(values["guardian"]) + len(prefix)
        entities.append({"type": "name", "text": values["guardian_name"], "start": start,
                         "end": start + len(values["guardian_name"])})
    entities.sort(key=lambda e: e["start"])
    for e in entities:
        assert note[e["start"]:e["end"]] == e["text"], e
    return note, entities


def _record(rng: random.Random, site: str, used: set[str]) -> dict[str, object]:
    """One patient record at ``site``; ``used`` keeps full names unique across the dataset."""
    _, spec_w, triage_w, _, dob_fmt = SITES[site]
    specialty = _weighted(rng, spec_w)
    child = specialty == "pediatrics"
    condition = rng.choice(sorted(SPECIALTIES[specialty]))
    meds, *by_level = SPECIALTIES[specialty][condition]
    level = TRIAGE.index(_weighted(rng, dict(zip(TRIAGE, triage_w))))
    # The label is carried by the symptom wording, the vital signs, or both; neither exceeds it.
    carrier = rng.choice(["symptom", "symptom", "vitals", "both"])
    sym_level = level if carrier != "vitals" else rng.randrange(max(level, 1))
    vit_level = level if carrier != "symptom" else rng.choice([0, 0, rng.randrange(level + 1)])
    v = vitals(rng, vit_level, child)
    sex = rng.choice(["boy", "girl"] if child else ["man", "woman"])
    sex = {"breast cancer": "woman", "prostate cancer": "man"}.get(condition, sex)
    female = sex in ("girl", "woman")
    while True:
        first = rng.choice(FEMALE_NAMES if female else MALE_NAMES)
        last = rng.choice(LAST_NAMES)
        if f"{first} {last}" not in used:
            used.add(f"{first} {last}")
            break
    lo, hi = AGE_RANGES.get(condition, AGE_RANGES[specialty])
    age = rng.randrange(lo, hi + 1)
    visit = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(730))
    dob = dt.date(visit.year - age - 1, 1, 1) + dt.timedelta(days=rng.randrange(365))
    age = visit.year - dob.year - ((visit.month, visit.day) < (dob.month, dob.day))
    symptom = rng.choice(by_level[sym_level])
    relation = rng.choice(["mother", "father", "grandparent"])
    pool = {"mother": FEMALE_NAMES, "father": MALE_NAMES}.get(relation, FIRST_NAMES)
    guardian_name = f"{rng.choice(pool)} {last}"
    while child and guardian_name in used:
        guardian_name = f"{rng.choice(pool)} {last}"
    if child:
        used.add(guardian_name)
    values = {
        "name": f"{first} {last}", "dob": _date(dob, dob_fmt), "age": str(age),
        "mrn": str(rng.randrange(1000000, 9999999)), "city": rng.choice(CITIES),
        "phone": f"({rng.randrange(201, 990)}) 555-01{rng.randrange(100):02d}",
        "date": _date(visit, dob_fmt), "specialty": specialty, "sex": sex,
        "sex_short": {"man": "M", "woman": "F"}.get(sex, sex),
        "symptom": symptom, "duration": rng.choice(DURATIONS),
        "hr": str(v["hr"]), "bp": f"{v['sbp']}/{v['dbp']}", "temp": tenths(v["temp"]),
        "spo2": str(v["spo2"]), "social": rng.choice(SOCIAL["child" if child else "adult"]),
        "exam": rng.choice(EXAMS[specialty]), "condition": condition,
        "action": rng.choice(ACTIONS).capitalize(), "medication": rng.choice(meds),
        "dose": rng.choice(DOSES), "followup": rng.choice(FOLLOWUPS),
        "guardian_name": guardian_name,
        "guardian": f" Accompanied by {relation} "
                    f"{guardian_name}." if child else "",
    }
    values["action_lower"] = values["action"].lower()
    note, entities = _fill(rng.choice(TEMPLATES[site]), values)
    summary = (f"{age}-year-old {sex} with {condition} presenting with {symptom}; "
               f"{values['action_lower']} {values['medication']}.")
    return {"site": site, "note": note, "summary": summary, "triage": TRIAGE[level],
            "entities": entities, "specialty": specialty}


def build(seed: int) -> dict[str, str]:
    """All files of clinic_notes except the datasheet: ``{relative path: text}``."""
    rng = rng_for(seed, "clinic_notes")
    used: set[str] = set()
    files = {}
    for split, n in SPLITS.items():
        total = sum(s[3] for s in SITES.values())
        sites = [name for name, s in sorted(SITES.items()) for _ in range(n * s[3] // total)]
        rng.shuffle(sites)
        records = []
        for i, site in enumerate(sites):
            rec = _record(rng, site, used)
            records.append({"id": f"{split}-{i:05d}", **rec})
        files[f"{split}.jsonl"] = to_jsonl(records)
    return files
