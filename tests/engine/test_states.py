"""The transition table: every pair of states, allowed or refused, spelt out here again."""

from __future__ import annotations

import itertools

import pytest

from zwmd.states import ACTIVE, TERMINAL, Reason, State, can_transition

B, Q, S, R = State.BUILDING, State.QUEUED, State.STARTING, State.RUNNING
OK, FAIL, CANCEL = State.SUCCEEDED, State.FAILED, State.CANCELLED

# Written out independently of the module's table, as the states describe them.
ALLOWED = {
    (B, Q), (B, S), (B, R), (B, OK), (B, FAIL), (B, CANCEL),
    (Q, S), (Q, R), (Q, OK), (Q, FAIL), (Q, CANCEL),
    (S, R), (S, OK), (S, FAIL), (S, CANCEL),
    (R, OK), (R, FAIL), (R, CANCEL),
}  # fmt: skip


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_transition(current: State, target: State) -> None:
    assert can_transition(current, target)


REFUSED = sorted(set(itertools.product(State, State)) - ALLOWED)


@pytest.mark.parametrize(("current", "target"), REFUSED)
def test_refused_transition(current: State, target: State) -> None:
    assert not can_transition(current, target)


def test_refused_transitions_cover_the_cases_users_would_worry_about() -> None:
    assert (R, S) in REFUSED  # a retried pod does not make a running workload "starting"
    assert (S, Q) in REFUSED  # a stale watch event from before the un-suspend
    assert all((end, other) in REFUSED for end in TERMINAL for other in State)


def test_terminal_and_active_states() -> None:
    assert {str(state) for state in TERMINAL} == {"succeeded", "failed", "cancelled"}
    assert {str(state) for state in ACTIVE} == {"starting", "running"}
    assert [state.is_terminal for state in State] == [False] * 4 + [True] * 3


def test_state_values_are_the_api_words() -> None:
    assert [str(state) for state in State] == [
        "building", "queued", "starting", "running", "succeeded", "failed", "cancelled",
    ]  # fmt: skip


def test_reason_values_are_stable_words() -> None:
    assert {str(reason) for reason in Reason} == {
        "BackoffLimitExceeded", "DeadlineExceeded", "PodFailurePolicy", "ImagePullError",
        "CrashLoopBackOff", "OOMKilled", "Evicted", "Unschedulable", "CreateFailed",
        "JobLost", "Error", "Cancelled", "BuildFailed",
    }  # fmt: skip


def test_reason_message_fills_its_template() -> None:
    message = Reason.OOM_KILLED.message(container="runner", exit_code=137, limit=", limit 1Gi")
    assert message == (
        "The runner container was killed because it ran out of memory (exit code 137, limit 1Gi)."
    )
    assert Reason.JOB_LOST.message(job_name="zwmd-runner-1") == (
        "The Job zwmd-runner-1 disappeared from Kubernetes before the workload finished"
        " (deleted outside zwmd?)."
    )
    with pytest.raises(KeyError):
        Reason.ERROR.message(container="runner")  # a field is missing: loud, not a hole
