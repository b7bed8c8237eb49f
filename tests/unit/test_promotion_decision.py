"""What promote and rollback decide from what the host records, before they do anything."""

import pytest

from deploy.flows.promotion_decision import (
    FRESH,
    RESUME,
    ROLL_BACK,
    SHOW,
    UNDO,
    Decision,
    decide_promotion,
    decide_rollback,
    saved_releases,
)
from deploy.remote.target import TargetError

PROMOTING = {
    "kind": "promote",
    "incoming": "2026r2",
    "outgoing": "2026r1",
    "done": ["stop_staging"],
}
ROLLING_BACK = {"kind": "rollback", "incoming": "2026r1", "outgoing": "2026r2", "done": []}
ROLES = {"production": "2026r2", "previous": "2026r1", "bad": []}


# -- promote ----------------------------------------------------------------------------------


def test_a_promotion_with_nothing_under_way_starts_afresh():
    assert decide_promotion(None, resume=False, plan_only=False) == Decision(FRESH)
    assert decide_promotion(None, resume=False, plan_only=True) == Decision(FRESH)


def test_a_plan_asked_for_during_a_run_shows_where_it_stands():
    assert decide_promotion(PROMOTING, resume=False, plan_only=True).action == SHOW


def test_an_interrupted_promotion_is_resumed_with_its_own_releases():
    decision = decide_promotion(PROMOTING, resume=True, plan_only=False)
    assert decision == Decision(RESUME, incoming="2026r2", outgoing="2026r1")


def test_an_interrupted_promotion_refuses_a_new_one_and_says_both_ways_out():
    with pytest.raises(TargetError) as refused:
        decide_promotion(PROMOTING, resume=False, plan_only=False)
    said = str(refused.value)
    assert "interrupted after stop_staging" in said
    assert "--resume" in said and "rollback_production" in said


def test_a_promotion_interrupted_at_its_start_says_so():
    with pytest.raises(TargetError, match="interrupted after its start"):
        decide_promotion({**PROMOTING, "done": []}, resume=False, plan_only=False)


def test_resuming_with_nothing_interrupted_is_refused():
    with pytest.raises(TargetError, match="no interrupted promotion"):
        decide_promotion(None, resume=True, plan_only=False)


def test_an_interrupted_rollback_must_be_finished_before_any_promotion():
    for resume in (False, True):
        with pytest.raises(TargetError, match="rollback_production --resume"):
            decide_promotion(ROLLING_BACK, resume=resume, plan_only=False)


# -- rollback ---------------------------------------------------------------------------------


def test_a_completed_promotion_is_rolled_back_to_the_previous_release():
    decision = decide_rollback(None, ROLES, "2026r2", resume=False)
    assert decision == Decision(ROLL_BACK, incoming="2026r1", outgoing="2026r2")


def test_an_interrupted_promotion_is_undone_bringing_its_old_release_back():
    decision = decide_rollback(PROMOTING, ROLES, "2026r1", resume=False)
    assert decision == Decision(UNDO, incoming="2026r1", outgoing="2026r2")


def test_an_interrupted_rollback_is_resumed_and_only_with_resume():
    decision = decide_rollback(ROLLING_BACK, ROLES, "2026r2", resume=True)
    assert decision == Decision(RESUME, incoming="2026r1", outgoing="2026r2")
    with pytest.raises(TargetError, match="rollback_production --resume"):
        decide_rollback(ROLLING_BACK, ROLES, "2026r2", resume=False)


def test_resuming_a_rollback_with_nothing_interrupted_is_refused():
    with pytest.raises(TargetError, match="no interrupted rollback"):
        decide_rollback(None, ROLES, "2026r2", resume=True)


def test_the_fabfile_must_agree_with_the_host_about_production():
    with pytest.raises(TargetError, match="production_release = '2026r2'"):
        decide_rollback(None, ROLES, "2026r9", resume=False)
    # Undoing a promotion: production is still what it was before that promotion.
    with pytest.raises(TargetError, match="production_release = '2026r1'"):
        decide_rollback(PROMOTING, ROLES, "2026r2", resume=False)


def test_there_must_be_a_good_previous_release_to_roll_back_to():
    first = {"production": "2026r1", "previous": None, "bad": []}
    with pytest.raises(TargetError, match="no previous production release"):
        decide_rollback(None, first, "2026r1", resume=False)
    with pytest.raises(TargetError, match="2026r1 is marked bad"):
        decide_rollback(None, {**ROLES, "bad": ["2026r1"]}, "2026r2", resume=False)


# -- runs saved by older code -------------------------------------------------------------------


def test_a_run_saved_as_new_and_old_is_read_with_its_releases_the_right_way_round():
    """Code before the incoming/outgoing names saved `new` and `old`; a run it left
    interrupted on a host is still finished (or undone) by today's code."""
    saved = {"kind": "promote", "new": "2026r2", "old": "2026r1", "done": ["stop_staging"]}
    assert saved_releases(saved) == ("2026r2", "2026r1")
    resumed = decide_promotion(saved, resume=True, plan_only=False)
    assert resumed == Decision(RESUME, incoming="2026r2", outgoing="2026r1")
    undone = decide_rollback(saved, ROLES, "2026r1", resume=False)
    assert undone == Decision(UNDO, incoming="2026r1", outgoing="2026r2")
