"""public_corpus/medical_*.txt: public medical text: medicine leaflets, public-health notices
and clinic information pages.

The clinic notes are the kit's private data; this is the *public* text of the same domain that
a real pretraining corpus would hold (package inserts, health-authority notices, hospital
"what to expect" pages). It names conditions, medicines, symptoms, doses, vital signs and
follow-up plans in everyday public language, so a model pretrained on it has met the clinic
vocabulary, but it holds **no patient and no person**: no name, date of birth, record number,
age of an individual or clinic-note sentence (tests/test_datasets.py checks names, towns and
sentences against the clinic lists). Symptoms are listed without triage labels, so the
triage rule is still learned from the notes.

Kept in files of their own (``medical_train.txt``, ``medical_validation.txt``) that the
tokenizer trainer does not read (it reads ``train.txt`` only), so the shipped tokenizer stays
byte-identical; ``scripts/pretrain_tiny_glm.py --continue-from`` mixes them in.
"""

from __future__ import annotations

import random

from gen_clinic import DOSES, DURATIONS, FOLLOWUPS, SPECIALTIES
from gen_common import Grammar, bind, integer, ordered, pick, rng_for, words
from gen_lexicon import COMMON

NUM_DOCS = 1300
VALIDATION_EVERY = 20  # document i is held out when i % 20 == 0: 5 %

# (specialty, condition, medicine) from the clinic lists: public facts, not patient data.
MEDICINES = sorted({(spec, cond, med) for spec, conds in SPECIALTIES.items()
                    for cond, (meds, *_) in conds.items() for med in meds})
CONDITIONS = sorted({(spec, cond) for spec, conds in SPECIALTIES.items() for cond in conds})

LEAFLET: Grammar = {
    **COMMON,
    "form": words("tablets|film-coated tablets|capsules|oral solution|prolonged-release tablets"),
    "strength": words("1|2.5|5|10|20|25|40|50|100|200|250|500"),
    "dose": DOSES,
    "duration": DURATIONS,
    "side": words(
        "feeling sick|headache|dizziness|tiredness|a dry mouth|loose stools|constipation|"
        "a mild rash|trouble sleeping|swollen ankles|a dry cough|hot flushes|muscle aches|"
        "bruising more easily|stomach pain|a change in taste"
    ),
    "serious": words(
        "swelling of the face, lips or tongue|difficulty breathing|a rash that blisters or peels|"
        "yellowing of the skin or eyes|unusual bleeding or bruising|chest pain|fainting|"
        "black or bloody stools|severe stomach pain|a very fast or irregular heartbeat"
    ),
    "storage": words(
        "Store below 25 C in the original package.|Keep out of the sight and reach of children.|"
        "Do not use after the expiry date on the carton.|Do not throw away medicines via "
        "household waste; ask your pharmacist how to dispose of them."
    ),
    "pro": words("your doctor|your pharmacist|your nurse|the clinic team|your specialist nurse"),
    "s": words(
        "Package leaflet: information for the user. {med_cap} {strength} mg {form}.|"
        "Read all of this leaflet carefully before you start taking this medicine.|"
        "{med_cap} is used to treat {condition} in {who}.|"
        "{med_cap} belongs to a group of medicines used for {condition}.|"
        "Your doctor may tell you to {action} {med} {dose}.|"
        "The usual course is taken {dose} and reviewed after {duration}.|"
        "Common symptoms of {condition} include {sym_a}, {sym_b} and {sym_c}.|"
        "Tell {pro} if you notice {sym_b} while taking {med}.|"
        "Like all medicines, {med} can cause side effects, such as {side} or {side}.|"
        "Stop taking {med} and get medical help at once if you have {serious}.|"
        "Do not take {med} if you are allergic to it or to any of the other ingredients.|"
        "Talk to {pro} before taking {med} if you have kidney or liver problems.|"
        "If you take more {med} than you should, contact {pro} or the nearest hospital.|"
        "If you forget a dose, take it as soon as you remember, unless the next dose is due.|"
        "Do not stop taking {med} without talking to {pro}.|{storage}|"
        "Follow-up after a new medicine is often one of these: {followup}.|"
        "Checks of your pulse, blood pressure and temperature are part of the usual review."
    ),
    "followup": FOLLOWUPS,
    "action": words("start|continue|increase|restart"),
}

NOTICE: Grammar = {
    **COMMON,
    "authority": words(
        "regional health authority|public health team|district health board|county health "
        "service|community health partnership"
    ),
    "topic": words(
        "the winter flu season|a heatwave|measles vaccination|bronchiolitis in babies|"
        "high blood pressure checks|diabetes foot care|sepsis awareness|stroke warning signs|"
        "asthma in schoolchildren|urinary infections in older adults|heart attack symptoms|"
        "cancer screening|safe use of antibiotics"
    ),
    "group": words(
        "adults over 65|children under five|people with heart failure|people with diabetes|"
        "pregnant women|people with asthma|people having chemotherapy|parents of young babies|"
        "carers of older relatives"
    ),
    "vital": words(
        "A normal resting heart rate for adults is between 60 and 100 beats per minute.|"
        "Blood pressure is written as two numbers, such as 120/80 mmHg; readings of 180/110 or "
        "more need urgent attention.|Oxygen saturation, written SpO2, is usually 95% or above in "
        "healthy people.|A temperature of 38 C or more is a fever; 40 C or more is very high.|"
        "Children have faster heart rates than adults; a baby's heart rate can be 110 to 160.|"
        "Your observations are heart rate (HR), blood pressure (BP), temperature (T) and oxygen "
        "saturation (SpO2).|A pulse above 130 beats per minute at rest, or saturations below 90%, "
        "needs emergency care.|Low blood pressure, below 90 systolic, with dizziness needs "
        "emergency care."
    ),
    "level": words(
        "For routine problems, book an appointment with your family doctor.|For urgent problems "
        "that cannot wait, call the advice line or visit an urgent care centre the same day.|"
        "In an emergency, call an ambulance or go straight to the emergency department.|"
        "Not sure whether it is routine, urgent or an emergency? Call the advice line first."
    ),
    "phone": lambda r: f"({r.randrange(201, 990)}) 555-01{r.randrange(100):02d}",
    "s": words(
        "Public health notice from the {authority} for {place}: {topic}.|"
        "This notice is for everyone in {place}, and especially for {group}.|"
        "Cases have risen over the past {duration_word}, so we are reminding residents of the "
        "signs to look out for.|{vital}|{vital}|{level}|{level}|"
        "Symptoms such as {sym_a} or {sym_b} should be checked by a doctor.|"
        "{group_cap} are offered a free check at the {place} health centre every {season}.|"
        "Clinics run on {weekday} mornings; the advice line is {phone}.|"
        "Wash your hands often and stay at home if you have a fever.|"
        "Medicines such as {med} must be taken exactly as prescribed.|"
        "Keep a written list of your medicines and doses and bring it to every appointment.|"
        "Pharmacists can advise on minor illnesses without an appointment.|"
        "Issued on {weekday} {day} {month} by the {authority}.|"
        "Every {age}-year-old {person} registered in {place} will be invited for {check} this "
        "{season}.|Anyone presenting with {sym_c} should be seen the same day."
    ),
    "age": integer(1, 90),
    "person": words("man|woman|boy|girl|child|adult"),
    "check": words("a free health check|a blood pressure check|bowel cancer screening|a flu "
                   "vaccination|a diabetes eye check|a hearing test|a lung health check"),
    "duration_word": words("week|fortnight|month|two months"),
    "day": integer(1, 28),
}

CLINIC_INFO: Grammar = {
    **COMMON,
    "specialty_name": words("cardiology|children's|cancer|general medicine|outpatient"),
    "s": words(
        "What to expect at your {specialty} clinic appointment in {place}.|"
        "When you arrive, a nurse will measure your heart rate, blood pressure, temperature "
        "and oxygen level.|The doctor will ask how long you have had your symptoms, for example "
        "{duration}, and whether they are getting worse.|"
        "The doctor will examine you, for example listening to your chest or feeling your "
        "abdomen.|At the end, the doctor will explain the likely diagnosis and agree a plan with "
        "you.|The plan may be to start, continue, increase or restart a medicine, such as {med}, "
        "taken {dose}.|Before you leave, you will be told what follow-up to expect, for example: "
        "{followup}.|Children must be accompanied by a parent or guardian.|"
        "Bring a list of your current medicines and any allergies.|"
        "The letter after your visit gives a short summary: the condition, what you were "
        "presenting with, and whether to start or continue a medicine such as {med}.|"
        "People seen here are often living with {condition} or {condition2}.|"
        "If your symptoms get much worse before your appointment, such as {sym_c}, do not wait: "
        "seek emergency care."
    ),
    "dose": DOSES,
    "duration": DURATIONS,
    "followup": FOLLOWUPS,
}


def _symptoms(rng: random.Random, specialty: str, condition: str) -> dict[str, list[str]]:
    """Three symptom phrases of ``condition``, of any severity, in random order."""
    _, *levels = SPECIALTIES[specialty][condition]
    phrases = pick(rng, [p for level in levels for p in level], 3)
    return {"sym_a": [phrases[0]], "sym_b": [phrases[1]], "sym_c": [phrases[2]]}


def _leaflet(rng: random.Random) -> str:
    specialty, condition, med = rng.choice(MEDICINES)
    who = "children" if specialty == "pediatrics" else rng.choice(["adults", "adults and "
                                                                    "older people"])
    g = {**bind(rng, LEAFLET, ["strength", "form", "pro", "dose"]), "med": [med],
         "med_cap": [med[:1].upper() + med[1:]], "condition": [condition], "who": [who],
         **_symptoms(rng, specialty, condition)}
    return ordered(rng, g, LEAFLET["s"], 7, 13)


def _notice(rng: random.Random) -> str:
    specialty, condition, med = rng.choice(MEDICINES)
    g = bind(rng, NOTICE, ["authority", "place", "topic", "group"])
    g = {**g, "med": [med], "group_cap": [g["group"][0][:1].upper() + g["group"][0][1:]],
         **_symptoms(rng, specialty, condition)}
    return ordered(rng, g, NOTICE["s"], 5, 10)


def _clinic_info(rng: random.Random) -> str:
    specialty, condition = rng.choice(CONDITIONS)
    other = rng.choice([c for s, c in CONDITIONS if s == specialty and c != condition])
    med = rng.choice(SPECIALTIES[specialty][condition][0])
    name = {"cardiology": "cardiology", "pediatrics": "children's", "oncology": "cancer",
            "general": "general medicine"}[specialty]
    g = {**bind(rng, CLINIC_INFO, ["place"]), "specialty": [name], "med": [med],
         "condition": [condition], "condition2": [other], **_symptoms(rng, specialty, condition)}
    return ordered(rng, g, CLINIC_INFO["s"], 5, 10)


KINDS = [_leaflet, _leaflet, _notice, _clinic_info]


def build(seed: int) -> dict[str, str]:
    """``medical_train.txt`` and ``medical_validation.txt``: one document per line, no repeats."""
    rng = rng_for(seed, "public_corpus", "medical")
    train: list[str] = []
    validation: list[str] = []
    seen: set[str] = set()
    for i in range(NUM_DOCS):
        doc = rng.choice(KINDS)(rng)
        if doc in seen:
            continue
        seen.add(doc)
        (validation if i % VALIDATION_EVERY == 0 else train).append(doc)
    return {"medical_train.txt": "\n".join(train) + "\n",
            "medical_validation.txt": "\n".join(validation) + "\n"}
