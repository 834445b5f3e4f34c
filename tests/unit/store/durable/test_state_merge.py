"""The merge of one process's share of a group into the stored state (both shared stores).

Users united up to the bound, counts per name the larger, the highest severity; the
coalesced count added once: a batch given back (a failed or retried transaction) adds
its part again, a committed one never.
"""

from __future__ import annotations

import json

from exporter.store.durable.batch import StateMerge, merge_state


def state(**fields: object) -> str:
    return json.dumps(fields)


def test_users_are_united_up_to_the_bound_and_the_rest_merged_per_name() -> None:
    stored = state(
        users=["a", "b"],
        components={"x": 5},
        plugins={},
        recoveries={"success": 1, "failure": 0},
        max_severity="high",
        coalesced=4,
    )
    mine = state(
        users=["c", "d", "e"],
        components={"x": 2, "y": 1},
        plugins={"p": 3},
        recoveries={"success": 0, "failure": 2},
        max_severity="medium",
        coalesced=9,
    )
    merged = json.loads(merge_state(stored, mine, max_users=4, coalesced_added=2))
    assert merged == {
        "users": ["a", "b", "c", "d"],
        "components": {"x": 5, "y": 1},
        "plugins": {"p": 3},
        "recoveries": {"success": 1, "failure": 2},
        "max_severity": "high",
        "coalesced": 6,
    }


def test_the_coalesced_count_is_added_once_whatever_the_retries() -> None:
    states = StateMerge()
    stored = state(users=[], coalesced=10)  # 10 from the others
    states.begin()
    states.merged("g", stored, state(coalesced=3))
    states.begin()  # the transaction was retried: nothing of the first try was written
    first = states.merged("g", stored, state(coalesced=3))
    states.committed(removed=())
    assert json.loads(first)["coalesced"] == 13
    states.begin()
    again = states.merged("g", first, state(coalesced=5))  # 2 more since
    states.committed(removed=())
    assert json.loads(again)["coalesced"] == 15
    states.committed(removed=["g"])  # left memory: a group that comes back starts at zero
    states.begin()
    assert json.loads(states.merged("g", again, state(coalesced=1)))["coalesced"] == 16
