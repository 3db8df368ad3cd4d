"""Word lists for the public text (public_corpus, superglue, summarization), grouped by topic.

Nothing here may name a person: people are roles. Place names are made up and must stay
disjoint from the clinic_notes towns (tests/test_datasets.py checks it).
"""

from __future__ import annotations

from gen_common import integer, words

PUBLIC_PLACES = words(
    "Aldermoor|Brackenfield|Calder Bay|Dunmere|Eastwick Vale|Fennick|Glenharrow|Hollin Cross|"
    "Kestrel Point|Larkspur|Marrowby|Nettlecombe|Oakhollow|Pellmarsh|Quarry Green|Redcastle Ford|"
    "Saltmere|Thornbury Wells|Umberleigh Down|Vellacott|Westerby|Yarrowdale|Ashenford|Brindle Hill|"
    "Coldwater Sound|Dapplemoor|Emberton|Foxley Heath|Greystone Quay|Harrowmere"
)

COMMON = {
    "place": PUBLIC_PLACES,
    "weekday": words("Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"),
    "month": words(
        "January|February|March|April|May|June|July|August|September|October|November|December"
    ),
    "season": words("spring|summer|autumn|winter"),
    "small": integer(2, 9),
    "mid": integer(10, 60),
    "big": integer(120, 950, 10),
    "year": integer(1820, 1990),
}

BIRDS = words(
    "robin|wren|blackbird|song thrush|mistle thrush|starling|house sparrow|chaffinch|goldfinch|"
    "greenfinch|bullfinch|siskin|linnet|yellowhammer|skylark|meadow pipit|swallow|house martin|"
    "swift|blue tit|great tit|coal tit|long-tailed tit|nuthatch|treecreeper|great spotted "
    "woodpecker|green woodpecker|jay|magpie|jackdaw|rook|carrion crow|raven|kestrel|buzzard|"
    "sparrowhawk|red kite|barn owl|tawny owl|heron|little egret|kingfisher|moorhen|coot|mallard|"
    "tufted duck|mute swan|cormorant|oystercatcher|curlew|redshank|lapwing|golden plover|"
    "turnstone|sanderling|herring gull|black-headed gull|gannet|puffin|fieldfare|redwing|"
    "waxwing|wheatear|stonechat|pied wagtail|grey wagtail|dipper|cuckoo|collared dove|wood pigeon"
)
TREES = words(
    "oak|ash|beech|birch|hazel|hawthorn|blackthorn|rowan|elder|alder|willow|poplar|sycamore|"
    "field maple|lime|horse chestnut|sweet chestnut|walnut|holly|yew|Scots pine|larch|spruce|"
    "cedar|cherry|crab apple|hornbeam|wild service tree|juniper|aspen"
)
FLOWERS = words(
    "primrose|cowslip|bluebell|wood anemone|lesser celandine|snowdrop|daffodil|foxglove|red "
    "campion|ragged robin|meadowsweet|yarrow|oxeye daisy|knapweed|field scabious|bird's-foot "
    "trefoil|clover|buttercup|dandelion|poppy|cornflower|honeysuckle|dog rose|bramble|heather|"
    "thrift|sea lavender|harebell|teasel|willowherb|red valerian|lady's smock|wild garlic|"
    "forget-me-not|speedwell|orchid|marsh marigold|water lily|yellow iris|ivy"
)
INSECTS = words(
    "bumblebee|honeybee|solitary bee|hoverfly|red admiral|peacock butterfly|small tortoiseshell|"
    "brimstone|orange tip|common blue|meadow brown|painted lady|comma butterfly|cinnabar moth|"
    "hawkmoth|dragonfly|damselfly|ladybird|stag beetle|grasshopper|cricket|lacewing|mayfly|"
    "wasp|ant|glow-worm|water boatman|pond skater"
)
MAMMALS = words(
    "fox|badger|hedgehog|rabbit|hare|roe deer|red squirrel|grey squirrel|otter|stoat|weasel|"
    "mole|vole|shrew|dormouse|pipistrelle bat|seal|porpoise|dolphin|pine marten"
)
COLOURS = words(
    "crimson|scarlet|amber|golden|ochre|rust-coloured|copper|lemon|cream|ivory|pearl|silver|"
    "slate-grey|charcoal|jet-black|chestnut|tawny|russet|olive|emerald|jade|moss-green|sage|teal|"
    "turquoise|navy|cobalt|sky-blue|lilac|lavender|violet|plum|mauve|rose-pink|coral|apricot"
)
LANDSCAPE = words(
    "hedgerow|water meadow|reed bed|salt marsh|shingle bank|sand dune|chalk downland|heathland|"
    "ancient woodland|conifer plantation|river bank|mill pond|canal towpath|quarry pool|"
    "estuary|sea cliff|rock pool|moorland edge|hay meadow|orchard|allotment|churchyard|"
    "railway cutting|village green|field margin|beech hanger|peat bog|limestone pavement"
)
SKY = words(
    "a clear, still morning|low cloud and drizzle|a bright, blustery afternoon|a hard frost at "
    "dawn|warm sunshine after rain|a grey, muggy day|a fierce westerly wind|thin mist over the "
    "water|heavy showers with sunny spells|a mild, damp evening|the first snow of the year|a "
    "golden, windless evening"
)

OBJECTS = words(
    "kettle|toaster|blender|food processor|slow cooker|rice cooker|coffee grinder|cafetiere|"
    "teapot|frying pan|saucepan|casserole dish|chopping board|bread knife|vegetable peeler|"
    "salad spinner|mixing bowl|measuring jug|weighing scale|lunch box|water bottle|flask|"
    "backpack|suitcase|umbrella|raincoat|walking boots|trainers|wool jumper|scarf|pair of "
    "gloves|sun hat|desk lamp|bedside lamp|alarm clock|radio|speaker|pair of headphones|"
    "keyboard|computer mouse|monitor stand|office chair|bookshelf|sofa bed|rug|duvet|pillow|"
    "towel set|laundry basket|clothes airer|iron|vacuum cleaner|mop|dustpan and brush|watering "
    "can|garden hose|wheelbarrow|spade|fork|pair of secateurs|hand trowel|bird feeder|compost "
    "bin|bicycle lock|bicycle helmet|bike light|tent|sleeping bag|camping stove|head torch|"
    "picnic blanket|cool box|jigsaw puzzle|board game|sketchbook|set of paints|sewing machine|"
    "knitting needles|drill|screwdriver set|tape measure|spirit level|toolbox|step ladder"
)
MATERIALS = words(
    "stainless steel|cast iron|aluminium|bamboo|oak|beech wood|pine|glass|ceramic|stoneware|"
    "enamel|recycled plastic|silicone|rubber|canvas|cotton|linen|wool|leather|nylon|polyester|"
    "cork|copper|brass|wicker|felt|fleece|denim"
)
GOOD_QUALITIES = words(
    "sturdy|lightweight|compact|quiet|reliable|intuitive|well-made|stylish|practical|durable|"
    "comfortable|waterproof|breathable|easy to clean|good value|energy-efficient|fast|versatile|"
    "solid|smooth|generous|sensible|elegant|robust|dependable|pleasant to use"
)
BAD_QUALITIES = words(
    "flimsy|heavy|bulky|noisy|fiddly|cheaply made|plain|awkward|fragile|uncomfortable|hard to "
    "clean|overpriced|slow|basic|wobbly|stiff|tiny|clumsy|temperamental|draughty|scratchy|"
    "leaky|loose|squeaky"
)
FEATURES = words(
    "the handle|the lid|the hinge|the switch|the cable|the battery|the zip|the strap|the "
    "base|the power button|the display|the main seam|the stitching|the front wheel|the clasp|the filter|the "
    "blade|the nozzle|the cushion|the frame|the manual|the packaging|the charger|the "
    "timer|the thermostat|the dial|the side pocket|the lining|the sole|the grip"
)

JOBS = words(
    "baker|butcher|greengrocer|fishmonger|florist|librarian|postwoman|postman|bus driver|taxi "
    "driver|train guard|ferry captain|harbour master|lifeguard|firefighter|paramedic|nurse|"
    "pharmacist|vet|dentist|teacher|teaching assistant|school caretaker|crossing patrol officer|"
    "carpenter|joiner|plumber|electrician|bricklayer|roofer|stonemason|blacksmith|potter|"
    "weaver|tailor|cobbler|clockmaker|bookbinder|printer|journalist|photographer|gardener|"
    "groundskeeper|farmer|shepherd|beekeeper|forester|gamekeeper|fisherman|boatbuilder|"
    "mechanic|engineer|architect|surveyor|accountant|shopkeeper|cafe owner|chef|waiter|"
    "barista|cleaner|porter|warden|ranger|lighthouse keeper|miller|brewer|cheesemaker"
)
HOBBIES = words(
    "birdwatching|bell ringing|choir singing|amateur dramatics|pottery|woodturning|knitting|"
    "quilting|embroidery|watercolour painting|life drawing|photography|model railways|"
    "chess|bridge|table tennis|badminton|bowls|cricket|five-a-side football|netball|rowing|"
    "sea swimming|cold-water dipping|cycling|fell running|orienteering|rock climbing|"
    "geocaching|metal detecting|local history|family history|gardening|beekeeping|baking|"
    "brewing|foraging|storytelling|poetry reading|book club|ukulele|folk dancing|salsa|"
    "yoga|tai chi|pilates|darts|snooker|kite flying|stargazing|fishing|sailing|kayaking"
)
BUILDINGS = words(
    "tithe barn|watermill|windmill|corn exchange|guildhall|market cross|almshouses|coaching "
    "inn|toll house|lime kiln|rope walk|customs house|workhouse|grammar school|chapel|priory|"
    "manor house|dovecote|ice house|signal box|pumping station|tannery|brewery|maltings|"
    "boathouse|bandstand|pier|lido|assembly rooms|railway viaduct|canal lock|swing bridge"
)
TRADES = words(
    "wool|salt|lace|rope|leather|pottery|glass|paper|silk|tin|lead|coal|timber|fish|cider|"
    "cheese|linen|clay pipes|brick|iron|barley|hops|slate|flint"
)
HISTORIC_EVENTS = words(
    "a great fire|a long drought|a flood that swept away the old bridge|the arrival of the "
    "railway|the closing of the mines|a visit by a travelling circus|a fever that emptied half "
    "the streets|a storm that wrecked the fishing fleet|the building of the canal|a bitter "
    "strike at the mill|a famous snowstorm|the opening of the first school"
)

FRUITS = words(
    "apple|pear|plum|damson|greengage|quince|cherry|apricot|peach|nectarine|fig|grape|"
    "gooseberry|blackcurrant|redcurrant|raspberry|strawberry|blackberry|blueberry|rhubarb|"
    "lemon|lime|orange|clementine|grapefruit|melon|pineapple|mango|banana|pomegranate"
)
INSTRUMENTS = words(
    "fiddle|accordion|tin whistle|concertina|banjo|mandolin|cello|double bass|clarinet|"
    "trumpet|trombone|tuba|flute|oboe|bassoon|harp|drum|tambourine|piano|church organ"
)
FEELINGS = words(
    "relieved|puzzled|delighted|nervous|curious|homesick|proud|embarrassed|hopeful|"
    "furious|grateful|lonely|restless|astonished|content|wistful|determined|anxious|"
    "cheerful|sheepish|bewildered|elated|weary|suspicious"
)
ACTIVITIES = words(
    "mending nets|sweeping the yard|peeling {fruit}s for a pie|practising the {instrument}|"
    "painting the fence|stacking firewood|feeding the hens|writing letters|polishing boots|"
    "sorting old photographs|kneading dough|repairing a kite|sharpening pencils|watering the "
    "tomatoes|counting the day's takings|tuning the {instrument}"
)
