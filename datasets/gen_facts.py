"""Fixed fact sentences for public_corpus: science explainers and how-to steps (written for the kit)."""

from __future__ import annotations

SCIENCE_TOPICS: dict[str, list[str]] = {
    "why the sky is blue": [
        "Sunlight looks white, but it is a mixture of every colour of the rainbow.",
        "When that light enters the air, it bumps into tiny molecules of nitrogen and oxygen.",
        "Short blue waves are scattered in all directions far more than long red waves.",
        "So wherever you look in the daytime sky, scattered blue light reaches your eyes.",
        "At sunset the light crosses much more air, the blue is scattered away, and reds remain.",
    ],
    "how tides work": [
        "The moon's gravity pulls on the whole Earth, but it pulls hardest on the side facing it.",
        "The oceans on that side bulge slightly toward the moon.",
        "A second bulge forms on the far side, where the pull is weakest.",
        "As the Earth turns, most coasts pass through both bulges, giving two high tides a day.",
        "When the sun and moon line up, their pulls add together and produce larger spring tides.",
    ],
    "photosynthesis": [
        "Plants make their own food from air, water and light.",
        "Inside each leaf are small green structures called chloroplasts.",
        "They capture the energy of sunlight and use it to split water molecules.",
        "Carbon dioxide from the air is then built into sugar, which the plant stores or burns.",
        "Oxygen is released as a by-product, which is why forests matter for the air we breathe.",
    ],
    "how volcanoes erupt": [
        "Deep below the surface, rock can become hot enough to melt into magma.",
        "Magma is lighter than the solid rock around it, so it slowly rises.",
        "Gases dissolved in the magma form bubbles as the pressure drops near the surface.",
        "If the magma is thick and sticky, the gas cannot escape easily and pressure builds.",
        "Eventually the rock above gives way and the volcano erupts, sometimes violently.",
    ],
    "how batteries store energy": [
        "A battery stores energy in chemicals rather than as electricity itself.",
        "Each cell has two different materials separated by a substance called an electrolyte.",
        "When you connect a circuit, a chemical reaction pushes electrons through the wire.",
        "In a rechargeable battery, a charger forces the reaction to run backwards.",
        "Over hundreds of cycles the materials wear, which is why old batteries hold less charge.",
    ],
    "why leaves change colour": [
        "Leaves are green because they are packed with a pigment called chlorophyll.",
        "In autumn, shorter days signal the tree to stop making new chlorophyll.",
        "As the green fades, yellow and orange pigments that were there all along show through.",
        "Some trees also make red pigments from sugars trapped in the leaf.",
        "Finally a thin layer of cells seals the stem, and the leaf falls.",
    ],
    "how vaccines train the immune system": [
        "The immune system learns to recognise germs by the shapes on their surface.",
        "A vaccine shows the body a harmless version or piece of a germ.",
        "White blood cells respond by making antibodies that fit those shapes.",
        "Some of those cells become memory cells that can last for years.",
        "If the real germ arrives later, the body can respond quickly before illness takes hold.",
    ],
    "how sound travels": [
        "Sound is a vibration passed from one particle to the next.",
        "When a drum is struck, its skin pushes the air, creating areas of high and low pressure.",
        "These pressure waves spread outward and eventually reach your eardrum.",
        "Sound moves faster through water than through air, and faster still through steel.",
        "In the vacuum of space there are no particles to carry it, so there is silence.",
    ],
    "why bread rises": [
        "Bread dough contains yeast, a tiny living fungus.",
        "The yeast feeds on sugars in the flour and gives off carbon dioxide gas.",
        "Kneading builds a stretchy network of gluten proteins that traps the gas.",
        "The trapped bubbles make the dough swell during proving.",
        "In the oven the gas expands further and the heat sets the structure in place.",
    ],
    "how earthquakes happen": [
        "The outer shell of the Earth is broken into large moving plates.",
        "Where plates meet, they can lock together while the forces on them keep growing.",
        "When the strain becomes too great, the rock suddenly slips along a fault.",
        "The stored energy is released as waves that shake the ground.",
        "Scientists measure those waves with instruments called seismometers.",
    ],
    "how bees find flowers": [
        "Bees see colours differently from people, including ultraviolet patterns on petals.",
        "Many flowers have markings that guide a bee toward the nectar.",
        "Bees also follow scent and can remember which flowers paid off.",
        "A honeybee that finds a good patch performs a waggle dance back at the hive.",
        "The angle and length of the dance tell other bees the direction and distance.",
    ],
    "why ice floats": [
        "Most substances are denser as solids than as liquids, but water is unusual.",
        "When water freezes, its molecules lock into an open, six-sided pattern.",
        "That pattern takes up more space than liquid water, so ice is less dense.",
        "This is why lakes freeze from the top down.",
        "The floating ice insulates the water below, letting fish survive the winter.",
    ],
    "how rainbows form": [
        "A rainbow appears when sunlight shines into falling raindrops.",
        "Light bends as it enters a drop, reflects off the back, and bends again on the way out.",
        "Each colour bends by a slightly different amount, so the colours spread apart.",
        "You only see a rainbow with the sun behind you and rain in front of you.",
        "Sometimes a fainter second bow appears, with its colours in reverse order.",
    ],
    "how magnets work": [
        "Every atom behaves a little like a tiny magnet because of its spinning electrons.",
        "In most materials those tiny magnets point in random directions and cancel out.",
        "In iron, nickel and cobalt, they can line up in regions called domains.",
        "When enough domains line up, the whole object becomes magnetic.",
        "Heating a magnet strongly scrambles the domains and it loses its pull.",
    ],
    "the life of a star": [
        "A star is born when a cloud of gas and dust collapses under its own gravity.",
        "The centre becomes so hot that hydrogen atoms fuse into helium, releasing energy.",
        "A star like the sun can shine steadily for billions of years.",
        "When the hydrogen runs low, the star swells and its outer layers drift away.",
        "The heaviest stars end in huge explosions that scatter new elements through space.",
    ],
    "how clouds form": [
        "Warm air can hold more water vapour than cold air.",
        "As warm, moist air rises, it expands and cools.",
        "The vapour condenses onto specks of dust, forming countless tiny droplets.",
        "Billions of these droplets together are what we see as a cloud.",
        "When droplets merge and grow heavy enough, they fall as rain.",
    ],
    "how digestion works": [
        "Digestion begins in the mouth, where chewing and saliva start to break food down.",
        "In the stomach, acid and enzymes turn food into a thick liquid.",
        "The small intestine absorbs most of the nutrients into the blood.",
        "The large intestine takes back water and hosts trillions of helpful bacteria.",
        "The whole journey usually takes between one and three days.",
    ],
    "why we have seasons": [
        "The Earth's axis is tilted by about twenty-three degrees.",
        "As the planet orbits the sun, first one hemisphere and then the other leans toward it.",
        "The hemisphere leaning toward the sun gets longer days and more direct sunlight.",
        "That extra energy warms the land and brings summer.",
        "Distance from the sun matters far less than most people think.",
    ],
}


HOWTO_TASKS: dict[str, list[str]] = {
    "fix a dripping tap": [
        "Turn off the water supply under the sink.", "Open the tap to drain any water left in "
        "the pipe.", "Unscrew the handle and lift out the valve.", "Replace the worn washer with "
        "one of the same size.", "Reassemble the tap and turn the water back on slowly."],
    "repot a house plant": [
        "Choose a pot a little wider than the old one, with drainage holes.", "Water the plant "
        "an hour before you start.", "Tip the pot and ease the plant out, supporting the stem.",
        "Loosen the roots gently and trim any that are dark or mushy.", "Set the plant at the "
        "same depth in fresh compost and water it well."],
    "change a bicycle inner tube": [
        "Release the brake and remove the wheel.", "Use tyre levers to lift one side of the "
        "tyre off the rim.", "Pull out the old tube and run your fingers inside the tyre to find "
        "anything sharp.", "Fit the new tube, starting at the valve, and push the tyre back on.",
        "Pump it up to the pressure printed on the tyre wall."],
    "start a compost heap": [
        "Pick a level, partly shaded spot on bare soil.", "Mix green waste such as vegetable "
        "peelings with brown waste such as cardboard and dry leaves.", "Keep the heap about as "
        "damp as a wrung-out sponge.", "Turn it with a fork every few weeks to let air in.",
        "After several months, dark crumbly compost will form at the bottom."],
    "hang a picture": [
        "Decide on the height, usually with the centre at eye level.", "Mark the spot lightly in "
        "pencil.", "Check for pipes and cables with a detector before drilling.", "Use a wall "
        "plug and screw suited to your wall and the weight of the frame.", "Hang the picture and "
        "adjust it with a spirit level."],
    "back up your photos": [
        "Gather your photos from phones, cameras and old computers into one folder.",
        "Copy that folder to an external drive.", "Keep a second copy somewhere else, such as "
        "a relative's house or an online service.", "Check once in a while that the copies open "
        "properly.", "Set a reminder to repeat the backup every month."],
    "sharpen a kitchen knife": [
        "Soak the whetstone in water for ten minutes if it needs it.", "Hold the blade at a "
        "shallow angle against the coarse side.", "Draw it across the stone in smooth strokes, "
        "from heel to tip.", "Repeat on the other side the same number of times.", "Finish on "
        "the fine side, then rinse and dry the knife."],
    "paint a room": [
        "Move furniture to the middle and cover it with sheets.", "Fill cracks and sand them "
        "smooth.", "Mask the edges of skirting boards and window frames.", "Cut in around the "
        "edges with a brush, then fill the walls with a roller.", "Let the first coat dry fully "
        "before adding a second."],
    "build a bird box": [
        "Cut a plank of untreated wood into six pieces: front, back, two sides, roof and base.",
        "Drill a small entrance hole high on the front panel.", "Make a few drainage holes in "
        "the base.", "Nail the pieces together, leaving the roof hinged for cleaning.",
        "Fix the box out of direct sun, away from where cats can reach."],
    "make a simple household budget": [
        "List everything that comes in each month.", "Write down your fixed costs, such as rent "
        "and bills.", "Track your everyday spending for a few weeks.", "Set a realistic limit "
        "for each category.", "Put something aside for savings as soon as money arrives."],
    "bleed a radiator": [
        "Turn the heating off and let the radiators cool.", "Hold a cloth under the valve at the "
        "top corner.", "Turn the valve slowly with a radiator key until you hear a hiss.",
        "Close it as soon as water starts to appear.", "Check the boiler pressure and top it up "
        "if needed."],
    "grow tomatoes on a balcony": [
        "Choose a sunny, sheltered spot.", "Plant young plants in large pots of good compost.",
        "Tie the stems to canes as they grow.", "Water regularly so the soil never dries out "
        "completely.", "Feed with tomato fertiliser once the first flowers appear."],
}
