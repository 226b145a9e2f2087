"""The merge and rank rules of gateway/priorities.py, with the worked cases of docs/portfolio.md."""
from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from gateway.priorities import Held, merge, normalise, same_meaning


def p(id_, text, category="physical_activity", when="2026-01-01T00:00:00Z", by="person", status="active", rank=None):
    return {"id": id_, "text": text, "category": category, "recorded_at": when, "expressed_by": by,
            "status": status, "rank": rank}


def test_normalising_ignores_case_punctuation_stop_words_and_endings():
    assert normalise("Walk my grandson to school!") == normalise("walking grandsons to School")
    assert normalise("I want to keep driving for work") == normalise("Keep driving for work.")
    assert normalise("Running marathons") == ("run", "marathon")


def test_worked_case_1_same_id_from_two_services_is_one_item():
    merged = merge([Held("plans", "plan-1", p("a", "Walk my grandson to school", rank=1), plan_rank=1),
                    Held("decisions", "dec-1", p("a", "Walk my grandson to school", when="2026-03-01T00:00:00Z"))])
    [item] = merged["current"]
    assert item["id"] == "a"
    assert [s["service"] for s in item["sources"]] == ["plans", "decisions"]
    assert item["initiatives"] == ["decisions", "plans"]


def test_worked_case_2_same_meaning_different_ids_merge_keeping_the_persons_newest_words():
    merged = merge([
        Held("plans", "plan-1", p("a", "Walk my grandson to school", when="2026-01-01T00:00:00Z")),
        Held("groups", "enr-1", p("b", "walking my grandson to school", when="2026-02-01T00:00:00Z")),
        Held("budgets", "bud-1", p("c", "Walk grandson to school", when="2026-03-01T00:00:00Z", by="professional")),
    ])
    [item] = merged["current"]
    assert item["id"] == "a"  # the oldest source's id: ids read from the portfolio stay stable
    assert item["text"] == "walking my grandson to school"  # the person's newest wording, not the planner's
    assert len(item["sources"]) == 3


def test_same_words_in_another_category_are_not_merged():
    assert not same_meaning(p("a", "Keep fit"), p("b", "Keep fit", category="mental_wellbeing"))
    merged = merge([Held("plans", "x", p("a", "Keep fit")),
                    Held("groups", "y", p("b", "Keep fit", category="mental_wellbeing"))])
    assert len(merged["current"]) == 2


def test_worked_case_3_ranking():
    held = [
        Held("groups", "e1", p("g", "Sleep through the night", category="mental_wellbeing", when="2026-05-01T00:00:00Z")),
        Held("plans", "pl", p("r2", "See friends at the club", category="social_connection", rank=2), plan_rank=2),
        Held("plans", "pl", p("r1", "Walk my grandson to school", rank=1), plan_rank=1),
        Held("budgets", "b1", p("two", "Lose weight", category="weight_and_diet", by="professional")),
        Held("groups", "e1", p("two", "Lose weight", category="weight_and_diet", by="professional")),
        Held("decisions", "d1", p("prof", "Fewer hypos", category="managing_my_condition", by="professional",
                                  when="2026-06-01T00:00:00Z")),
    ]
    order = [i["id"] for i in merge(held)["current"]]
    # own order in the agreed plan first; then held by more initiatives; then said by the person; then newest
    assert order == ["r1", "r2", "two", "g", "prof"]
    assert [i["position"] for i in merge(held)["current"]] == [1, 2, 3, 4, 5]


def test_worked_case_4_achieved_and_cancelled_are_shown_apart_and_conflicts_flagged():
    merged = merge([
        Held("plans", "pl", p("a", "Stop smoking", category="managing_my_condition", when="2026-01-01T00:00:00Z")),
        Held("decisions", "d1", p("a", "Stop smoking", category="managing_my_condition", status="achieved",
                                  when="2026-04-01T00:00:00Z")),
        Held("plans", "pl", p("b", "Return to work", category="work_and_money", status="cancelled")),
    ])
    assert merged["current"] == []
    past = {i["id"]: i for i in merged["past"]}
    assert set(past) == {"a", "b"}
    [conflict] = past["a"]["conflicts"]
    assert conflict["newer"]["service"] == "decisions" and conflict["newer"]["status"] == "achieved"
    assert conflict["older"]["service"] == "plans" and conflict["older"]["status"] == "active"
    assert past["b"]["conflicts"] == []


def _strip(merged):
    for group in merged.values():
        for item in group:
            item["sources"] = sorted(item["sources"], key=lambda s: (s["service"], s["ref"], s["priority_id"]))
            item["conflicts"] = sorted(item["conflicts"], key=lambda c: c["detail"])
    return merged


TEXTS = ["Walk my grandson to school", "walking grandson to school", "Keep driving for work",
         "keep driving", "Sleep better", "Lose weight", "See my daughter"]
held_items = st.builds(
    lambda service, ref, id_, text, cat, day, by, status: Held(
        service, ref, p(id_, text, cat, f"2026-01-{day:02d}T00:00:00Z", by, status)),
    st.sampled_from(["plans", "budgets", "decisions", "groups"]), st.sampled_from(["r1", "r2"]),
    st.sampled_from(["i1", "i2", "i3", "i4"]), st.sampled_from(TEXTS),
    st.sampled_from(["physical_activity", "mental_wellbeing"]), st.integers(1, 28),
    st.sampled_from(["person", "professional"]), st.sampled_from(["active", "achieved", "proposed"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(held_items, max_size=12), st.randoms(use_true_random=False))
def test_merging_does_not_depend_on_the_order_events_arrived(items, rnd):
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert _strip(merge(items)) == _strip(merge(shuffled))
