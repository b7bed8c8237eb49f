"""What `promote` and `rollback` are to do, decided from what the host records, before anything
is done: start afresh, resume an interrupted run, undo an interrupted promotion, roll back a
completed one, only show where a run stands, or refuse with the command that would help.

Pure functions of the saved run (deploy/promotion.json), the roles (deploy/roles.json) and the
fabfile's production release, so every branch is tested in milliseconds
(tests/unit/test_promotion_decision.py); deploy.flows.promote does what they decide.

A run's releases are named for the direction it moves production in, so the names stay true for
a rollback: `incoming` is the release production goes to, `outgoing` the one it leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.remote.target import TargetError

FRESH, RESUME, UNDO, ROLL_BACK, SHOW = "fresh", "resume", "undo", "roll back", "show"


@dataclass(frozen=True)
class Decision:
    action: str
    incoming: str | None = None
    outgoing: str | None = None


def saved_releases(state: dict) -> tuple[str | None, str | None]:
    """(incoming, outgoing) of a saved run. Runs saved before these names (by code that called
    them new and old) are read too, so a run interrupted then can still be finished."""
    if "incoming" in state or "outgoing" in state:
        return state.get("incoming"), state.get("outgoing")
    return state.get("new"), state.get("old")


def decide_promotion(state: dict | None, *, resume: bool, plan_only: bool) -> Decision:
    """For `promote_staging_to_production` [--resume] [--plan]. A fresh promotion's releases
    come from its preflight, so a fresh decision names none."""
    incoming, outgoing = saved_releases(state) if state else (None, None)
    if plan_only and state:
        return Decision(SHOW)  # a run under way (or interrupted): where it is
    if state and kind(state) != "promote":
        raise TargetError(
            f"a rollback to {incoming} was interrupted: finish it with "
            "`fab rollback_production --resume`"
        )
    if state and not resume:
        raise TargetError(
            f"a promotion of {incoming} was interrupted after "
            f"{state['done'][-1] if state.get('done') else 'its start'}: "
            "finish it with `fab promote_staging_to_production --resume`, "
            "or undo it with `fab rollback_production`"
        )
    if resume:
        if not state:
            raise TargetError("there is no interrupted promotion to resume")
        return Decision(RESUME, incoming=incoming, outgoing=outgoing)
    return Decision(FRESH)


def decide_rollback(
    state: dict | None, roles: dict, expected_production: str | None, *, resume: bool
) -> Decision:
    """For `rollback_production` [--resume]: finish an interrupted rollback, undo an interrupted
    promotion (production as it was before it), or roll back the completed last promotion."""
    incoming, outgoing = saved_releases(state) if state else (None, None)
    if state is None:
        check_production(expected_production, roles.get("production"))
    elif kind(state) == "promote":
        # Undoing it: production is what it was before that promotion.
        check_production(expected_production, outgoing)
    if state and kind(state) == "rollback":
        if not resume:
            raise TargetError(
                f"a rollback to {incoming} was interrupted: finish it with "
                "`fab rollback_production --resume`"
            )
        return Decision(RESUME, incoming=incoming, outgoing=outgoing)
    if resume:
        raise TargetError("there is no interrupted rollback to resume")
    if state:  # an interrupted promotion, undone: its old release comes back
        return Decision(UNDO, incoming=outgoing, outgoing=incoming)
    current, previous = roles.get("production"), roles.get("previous")
    if not current or not previous:
        raise TargetError("there is no previous production release to roll back to")
    if previous in roles.get("bad", []):
        raise TargetError(f"{previous} is marked bad; it is not a rollback target")
    return Decision(ROLL_BACK, incoming=previous, outgoing=current)


def check_production(expected: str | None, production: str | None) -> None:
    """The fabfile's production_release must be the host's production release."""
    if (expected or None) != production:
        raise TargetError(
            f"the host's production release is {production or 'none'}, the fabfile expects "
            f"{expected or 'none'}: set production_release = {production!r}"
        )


def kind(state: dict) -> str:
    return state.get("kind", "promote")
