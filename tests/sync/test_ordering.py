"""Level-triggered sync converges whatever the delivery order: 200 stage-change deliveries for
20 leads, with duplicates, processed in an order hypothesis chooses while the leads keep moving,
end with every address in exactly the segment of its lead's final stage."""

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.sync import reconcile
from tests.sync.world import ACCOUNT, LOST, PROPOSAL, QUALIFIED, WON

MAPPING = {QUALIFIED: "qualified", PROPOSAL: "proposal", WON: "won", LOST: "remove"}
EXPECTED = {QUALIFIED: {"qualified"}, PROPOSAL: {"proposal"}, WON: {"won"}, LOST: set()}
LEADS, MOVES, DUPLICATES = 20, 7, 60  # 140 moves + 60 repeats = 200 deliveries
_run = itertools.count()


@st.composite
def histories(draw):
    """Per lead 7 stages; a global order of the 140 moves; 60 of them delivered twice; for each
    delivery the step at which it is processed (later than its move, or at the very end)."""
    stages = st.sampled_from(sorted(MAPPING))
    moves = [draw(st.lists(stages, min_size=MOVES, max_size=MOVES)) for _ in range(LEADS)]
    order = draw(st.permutations([lead for lead, seq in enumerate(moves) for _ in seq]))
    twice = draw(st.sets(st.integers(0, len(order) - 1), min_size=DUPLICATES, max_size=DUPLICATES))
    copies = [2 if step in twice else 1 for step in range(len(order))]
    delays = draw(st.lists(st.integers(0, 60), min_size=len(order), max_size=len(order)))
    return moves, order, copies, delays


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(history=histories())
async def test_final_state_follows_final_stages_whatever_the_order(world, history):
    moves, order, copies, delays = history
    await world.map(MAPPING)
    run = next(_run)
    emails = [f"lead{n}.run{run}@shop.io" for n in range(LEADS)]
    leads = [world.lead(moves[n][0], [world.contact(emails=[emails[n]])]) for n in range(LEADS)]
    position = [0] * LEADS
    due: dict[int, list[int]] = {}  # step → leads whose delivery is processed then
    deliveries = 0
    for step, lead_index in enumerate(order):
        world.move(leads[lead_index], moves[lead_index][position[lead_index]])
        position[lead_index] += 1
        for _ in range(copies[step]):
            due.setdefault(step + delays[step], []).append(lead_index)
            deliveries += 1
        for late in due.pop(step, []):
            await reconcile.reconcile_lead(world.resources, ACCOUNT, leads[late])
    for step in sorted(due):
        for late in due[step]:
            await reconcile.reconcile_lead(world.resources, ACCOUNT, leads[late])
    assert deliveries == 200
    for n in range(LEADS):
        final = moves[n][-1]
        status, segments = world.subscriber(emails[n])
        if final == LOST and status is None:
            continue  # never synced while in a mapped segment: nothing to remove
        assert segments == EXPECTED[final], (n, moves[n])
