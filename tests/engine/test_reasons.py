"""observe(): the state and failure reason read from realistic Job, Pod and Event dicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.engine.kubeobjects import (
    JOB_NAME,
    T0,
    at,
    crash_looping,
    event,
    job,
    job_condition,
    pod,
    pod_condition,
    running,
    terminated,
    unschedulable,
    waiting,
)
from zwmd.engine.reasons import Observation, human_duration, observe
from zwmd.states import Reason, State

GRACE = timedelta(minutes=5)
DEADLINE = timedelta(minutes=10)
NOW = at(60)
BACKOFF = "Job has reached the specified backoff limit"


def look(
    the_job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]] = (),
    events: Sequence[Mapping[str, Any]] = (),
    *,
    now: datetime = NOW,
    first_seen: Mapping[str, datetime] | None = None,
) -> Observation:
    return observe(
        the_job,
        pods,
        events,
        now,
        image_pull_grace=GRACE,
        unschedulable_deadline=DEADLINE,
        first_seen=first_seen,
    )


def failed_job(reason: str, message: str, **kwargs: Any) -> dict[str, Any]:
    """A Job that failed, as Kubernetes 1.29+ writes it: FailureTarget, then Failed."""
    conditions = [
        job_condition("FailureTarget", reason, message, when=at(40)),
        job_condition("Failed", reason, message, when=at(41)),
    ]
    return job(conditions=conditions, failed=1, **kwargs)


# -- not started, starting, running ----------------------------------------------------


def test_suspended_job_is_queued() -> None:
    seen = look(job(suspend=True))
    assert seen.state is State.QUEUED
    assert seen.reason is None
    assert seen.started_at is None
    assert "free slot" in seen.message


def test_suspended_job_ignores_a_failed_create_event() -> None:
    # a suspended Job creates no pods: an old FailedCreate cannot be about it
    failed_create = event("FailedCreate", "Error creating: forbidden", first=at(-60))
    assert look(job(suspend=True), events=[failed_create]).state is State.QUEUED


def test_un_suspended_job_without_pods_is_starting() -> None:
    seen = look(job())
    assert seen.state is State.STARTING
    assert seen.started_at == T0


def test_pending_pod_creating_its_container_is_starting() -> None:
    the_pod = pod(containers=[waiting("runner", "ContainerCreating")])
    seen = look(job(active=1), [the_pod])
    assert seen.state is State.STARTING
    assert seen.message == "Creating the runner container."


def test_pending_pod_not_yet_scheduled_is_starting() -> None:
    assert look(job(active=1), [pod(conditions=[])]).state is State.STARTING


def test_running_container_is_running() -> None:
    seen = look(job(active=1), [pod(phase="Running", containers=[running("runner")])])
    assert seen.state is State.RUNNING
    assert seen.message == "The runner container is running."
    assert seen.started_at == T0
    assert seen.reason is None


def test_pod_running_its_init_containers_is_still_starting() -> None:
    # the workload's own container has not started: the pod is Pending, PodInitializing
    the_pod = pod(
        containers=[waiting("runner", "PodInitializing")],
        init_containers=[running("fetch-dockerfile")],
    )
    seen = look(job(active=1), [the_pod])
    assert seen.state is State.STARTING
    assert seen.message == "Running the pod's init containers before the runner container."


def test_failed_pod_that_the_job_will_retry_is_not_a_failure() -> None:
    first = pod("aaaaa", phase="Failed", containers=[terminated(exit_code=1)])
    retry = pod("bbbbb", created=at(35), containers=[waiting("runner", "ContainerCreating")])
    seen = look(job(active=1, failed=1, backoff_limit=3), [first, retry])
    assert seen.state is State.STARTING


# -- Job conditions: success --------------------------------------------------------------


def test_complete_job_succeeded() -> None:
    the_job = job(conditions=[job_condition("Complete", when=at(31))], completion_time=at(31))
    seen = look(the_job, [pod(phase="Succeeded", containers=[terminated(exit_code=0)])])
    assert seen.state is State.SUCCEEDED
    assert (seen.reason, seen.exit_code) == (None, 0)
    assert (seen.started_at, seen.finished_at) == (T0, at(31))


def test_success_criteria_met_counts_as_success() -> None:
    the_job = job(conditions=[job_condition("SuccessCriteriaMet", "CompletionsReached")])
    assert look(the_job).state is State.SUCCEEDED


def test_job_conditions_come_before_pod_state() -> None:
    the_job = failed_job(
        "DeadlineExceeded", "Job was active longer than specified deadline",
        active_deadline_seconds=180,
    )  # fmt: skip
    still_running = pod(phase="Running", containers=[running()], deleting=True)
    seen = look(the_job, [still_running])
    assert (seen.state, seen.reason) == (State.FAILED, Reason.DEADLINE_EXCEEDED)


# -- Job conditions: failure -------------------------------------------------------------


def test_deadline_exceeded_names_the_timeout() -> None:
    the_job = failed_job(
        "DeadlineExceeded", "Job was active longer than specified deadline",
        active_deadline_seconds=180,
    )  # fmt: skip
    seen = look(the_job)
    assert (seen.state, seen.reason) == (State.FAILED, Reason.DEADLINE_EXCEEDED)
    assert seen.message == "The run exceeded its timeout of 3 minutes and was stopped."
    assert seen.finished_at == at(41)


def test_pod_failure_policy_keeps_the_jobs_explanation() -> None:
    explanation = (
        f"Container runner for pod zenml-workloads/{JOB_NAME}-x7k2p failed with exit code 42"
        " matching FailJob rule at index 0"
    )
    failed_pod = pod(phase="Failed", containers=[terminated(exit_code=42)])
    seen = look(failed_job("PodFailurePolicy", explanation), [failed_pod])
    assert (seen.state, seen.reason, seen.exit_code) == (
        State.FAILED, Reason.POD_FAILURE_POLICY, 42,
    )  # fmt: skip
    assert explanation in seen.message


def test_failure_target_alone_is_already_the_failure() -> None:
    # Kubernetes 1.29+: FailureTarget is set while the pods are still terminating
    the_job = job(conditions=[job_condition("FailureTarget", "BackoffLimitExceeded", BACKOFF)])
    failed_pod = pod(phase="Failed", containers=[terminated(exit_code=2)])
    seen = look(the_job, [failed_pod])
    assert (seen.state, seen.reason, seen.exit_code) == (State.FAILED, Reason.ERROR, 2)


def test_backoff_limit_without_any_pod_left_says_so() -> None:
    seen = look(failed_job("BackoffLimitExceeded", BACKOFF, backoff_limit=2))
    assert (seen.state, seen.reason) == (State.FAILED, Reason.BACKOFF_LIMIT_EXCEEDED)
    assert seen.message.startswith("The Job gave up after 1 failed pod(s) (backoffLimit 2).")


def test_out_of_memory_is_oom_killed_with_the_limit() -> None:
    failed_pod = pod(
        phase="Failed",
        containers=[terminated(exit_code=137, reason="OOMKilled")],
        memory_limit="700Mi",
    )
    seen = look(failed_job("BackoffLimitExceeded", BACKOFF), [failed_pod])
    assert (seen.state, seen.reason, seen.exit_code) == (State.FAILED, Reason.OOM_KILLED, 137)
    assert seen.message == (
        "The runner container was killed because it ran out of memory (exit code 137, limit 700Mi)."
    )


def test_exit_code_137_without_a_reason_is_oom_killed_without_a_limit() -> None:
    failed_pod = pod(
        phase="Failed", containers=[terminated(exit_code=137, reason="Error")], memory_limit=None
    )
    seen = look(failed_job("BackoffLimitExceeded", BACKOFF), [failed_pod])
    assert seen.reason is Reason.OOM_KILLED
    assert seen.message.endswith("(exit code 137).")


def test_evicted_pod_is_evicted_with_the_kubelets_message() -> None:
    kubelet = (
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 81Mi."
        " Container runner was using 612Mi, request is 256Mi, has larger consumption of memory."
    )
    failed_pod = pod(
        phase="Failed",
        reason="Evicted",
        message=kubelet,
        containers=[terminated(exit_code=137, reason="Error")],
        conditions=[
            pod_condition(
                "DisruptionTarget", reason="TerminationByKubelet", message=kubelet, when=at(20)
            )
        ],
    )
    seen = look(failed_job("BackoffLimitExceeded", BACKOFF), [failed_pod])
    assert (seen.state, seen.reason) == (State.FAILED, Reason.EVICTED)
    assert seen.message == f"The pod {JOB_NAME}-x7k2p was evicted (TerminationByKubelet): {kubelet}"


def test_preempted_pod_with_disruption_target_is_evicted() -> None:
    failed_pod = pod(
        phase="Failed",
        containers=[terminated(exit_code=143, reason="Error")],
        conditions=[
            pod_condition(
                "DisruptionTarget",
                reason="PreemptionByScheduler",
                message="Preempted in order to admit critical pod",
            )
        ],
    )
    seen = look(failed_job("BackoffLimitExceeded", BACKOFF), [failed_pod])
    assert seen.reason is Reason.EVICTED
    assert "PreemptionByScheduler" in seen.message
    assert "Preempted in order to admit critical pod" in seen.message


def test_error_exit_names_the_code_container_and_termination_message() -> None:
    failed_pod = pod(
        phase="Failed",
        containers=[terminated(exit_code=3, message="ValueError: pipeline 'train' has no steps")],
    )
    seen = look(failed_job("BackoffLimitExceeded", BACKOFF), [failed_pod])
    assert (seen.state, seen.reason, seen.exit_code) == (State.FAILED, Reason.ERROR, 3)
    assert seen.message == (
        "The runner container exited with code 3."
        " Its termination message: ValueError: pipeline 'train' has no steps"
    )


def test_the_last_failed_pod_explains_the_failure() -> None:
    oom_first = pod(
        "aaaaa",
        phase="Failed",
        created=at(0),
        containers=[terminated(exit_code=137, reason="OOMKilled", finished=at(10))],
    )
    error_last = pod(
        "bbbbb",
        phase="Failed",
        created=at(12),
        containers=[terminated(exit_code=2, started=at(14), finished=at(30))],
    )
    seen = look(
        failed_job("BackoffLimitExceeded", BACKOFF, backoff_limit=1), [error_last, oom_first]
    )
    assert (seen.reason, seen.exit_code) == (Reason.ERROR, 2)


def test_failed_init_container_explains_the_failure() -> None:
    failed_pod = pod(
        phase="Failed",
        init_containers=[terminated("fetch-dockerfile", exit_code=1)],
        containers=[waiting("runner", "PodInitializing")],
    )
    seen = look(failed_job("BackoffLimitExceeded", BACKOFF), [failed_pod])
    assert seen.reason is Reason.ERROR
    assert seen.message == "The fetch-dockerfile container exited with code 1."


# -- pod state: image pulls --------------------------------------------------------------

PULL_MESSAGE = 'Back-off pulling image "registry.example.com/zenml-runner:abc"'


def pulling_pod() -> dict[str, Any]:
    return pod(
        created=at(0),
        containers=[
            waiting(
                "runner",
                "ImagePullBackOff",
                PULL_MESSAGE,
                image="registry.example.com/zenml-runner:abc",
            )
        ],
    )


def test_image_pull_within_the_grace_period_is_still_starting() -> None:
    seen = look(job(active=1), [pulling_pod()], now=at(10))
    assert seen.state is State.STARTING
    assert PULL_MESSAGE in seen.message
    # first seen now; the caller is asked to look again when the grace period ends
    assert list(seen.first_seen.values()) == [at(10)]
    assert seen.recheck_at == at(10) + GRACE


def test_image_pull_past_the_grace_period_fails_with_the_kubelets_message() -> None:
    first = look(job(active=1), [pulling_pod()], now=at(10))
    still = look(job(active=1), [pulling_pod()], now=at(10) + GRACE - timedelta(seconds=1),
                 first_seen=first.first_seen)  # fmt: skip
    assert still.state is State.STARTING
    later = look(job(active=1), [pulling_pod()], now=at(10) + GRACE, first_seen=still.first_seen)
    assert (later.state, later.reason) == (State.FAILED, Reason.IMAGE_PULL_ERROR)
    assert later.message == (
        "The image registry.example.com/zenml-runner:abc could not be pulled for 5 minutes: "
        + PULL_MESSAGE
    )
    assert later.finished_at == at(10) + GRACE


def test_image_pull_grace_counts_from_the_kubelets_first_event() -> None:
    # a restarted daemon has no first_seen: the kubelet's Events remember
    detail = (
        'Failed to pull image "registry.example.com/zenml-runner:abc": rpc error: code = NotFound'
        ' desc = failed to pull and unpack image "registry.example.com/zenml-runner:abc": not found'
    )
    pull_failed = event(
        "Failed", detail, kind="Pod", name=f"{JOB_NAME}-x7k2p", first=at(5), last=at(200),
        count=6, component="kubelet",
    )  # fmt: skip
    seen = look(job(active=1), [pulling_pod()], [pull_failed], now=at(5) + GRACE)
    assert (seen.state, seen.reason) == (State.FAILED, Reason.IMAGE_PULL_ERROR)
    assert seen.message.endswith(detail)  # the detailed event beats the terse waiting message


def test_image_pull_problem_that_went_away_is_forgotten() -> None:
    first = look(job(active=1), [pulling_pod()], now=at(10))
    pulled = pod(phase="Running", containers=[running(since=at(70))])
    seen = look(job(active=1), [pulled], now=at(70), first_seen=first.first_seen)
    assert seen.state is State.RUNNING
    assert seen.first_seen == {}
    assert seen.recheck_at is None


def test_invalid_image_name_fails_at_once() -> None:
    the_pod = pod(
        containers=[
            waiting(
                "runner",
                "InvalidImageName",
                'Failed to apply default image tag "Zenml:Runner": couldn\'t parse image name',
            )
        ]
    )
    seen = look(job(active=1), [the_pod], now=at(1))
    assert (seen.state, seen.reason) == (State.FAILED, Reason.IMAGE_PULL_ERROR)
    assert "couldn't parse image name" in seen.message


def test_crash_loop_back_off_fails_with_the_last_exit_code() -> None:
    the_pod = pod(phase="Running", containers=[crash_looping("runner", 1)])
    seen = look(job(active=1), [the_pod])
    assert (seen.state, seen.reason, seen.exit_code) == (
        State.FAILED, Reason.CRASH_LOOP_BACK_OFF, 1,
    )  # fmt: skip
    assert "runner container keeps crashing (last exit code 1)" in seen.message


def test_missing_environment_secret_is_starting_then_create_failed() -> None:
    the_pod = pod(
        containers=[
            waiting("runner", "CreateContainerConfigError", f'secret "{JOB_NAME}-env" not found')
        ]
    )
    first = look(job(active=1), [the_pod], now=at(1))
    assert first.state is State.STARTING
    later = look(job(active=1), [the_pod], now=at(1) + GRACE, first_seen=first.first_seen)
    assert (later.state, later.reason) == (State.FAILED, Reason.CREATE_FAILED)
    assert f'secret "{JOB_NAME}-env" not found' in later.message


def test_an_image_that_runs_as_root_fails_at_once_and_names_the_setting() -> None:
    """The kubelet refuses a root image in a runAsNonRoot pod; waiting would not help."""
    said = 'container has runAsNonRoot and image will run as root (pod: "p", container: runner)'
    the_pod = pod(containers=[waiting("runner", "CreateContainerConfigError", said)])
    seen = look(job(active=1), [the_pod], now=at(1))
    assert (seen.state, seen.reason) == (State.FAILED, Reason.CREATE_FAILED)
    assert said in seen.message
    assert "ZWMD_RUNNER_POD_SECURITY=baseline" in seen.message


# -- pod state: scheduling --------------------------------------------------------------

SCHEDULER = (
    "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available:"
    " 3 No preemption victims found for incoming pod."
)


def test_unschedulable_before_the_deadline_is_starting() -> None:
    the_pod = pod(conditions=[unschedulable(SCHEDULER, since=at(0))])
    seen = look(job(active=1), [the_pod], now=at(0) + DEADLINE - timedelta(seconds=1))
    assert seen.state is State.STARTING
    assert seen.message == f"Waiting for a node: {SCHEDULER}"
    assert seen.recheck_at == at(0) + DEADLINE


def test_unschedulable_past_the_deadline_fails_with_the_schedulers_message() -> None:
    # measured from the condition's own time: no first_seen needed
    the_pod = pod(conditions=[unschedulable(SCHEDULER, since=at(0))])
    seen = look(job(active=1), [the_pod], now=at(0) + DEADLINE)
    assert (seen.state, seen.reason) == (State.FAILED, Reason.UNSCHEDULABLE)
    assert seen.message == f"No node could take the pod for 10 minutes: {SCHEDULER}"


def test_unschedulable_uses_the_earlier_first_seen() -> None:
    the_pod = pod(conditions=[unschedulable(SCHEDULER, since=at(300))])
    key = f"{JOB_NAME}-x7k2p/unschedulable"
    seen = look(job(active=1), [the_pod], now=at(0) + DEADLINE, first_seen={key: at(0)})
    assert seen.reason is Reason.UNSCHEDULABLE


# -- Events on the Job -------------------------------------------------------------------

MISSING_SA = (
    f'Error creating: pods "{JOB_NAME}-" is forbidden: error looking up service account'
    ' zenml-workloads/zenml-runner: serviceaccount "zenml-runner" not found'
)


def test_failed_create_event_is_create_failed() -> None:
    seen = look(job(), events=[event("FailedCreate", MISSING_SA, first=at(1), last=at(40))])
    assert (seen.state, seen.reason) == (State.FAILED, Reason.CREATE_FAILED)
    assert seen.message == f"Kubernetes could not create the pod: {MISSING_SA}"


def test_failed_create_event_of_another_job_or_an_earlier_run_is_ignored() -> None:
    other = event("FailedCreate", MISSING_SA, name="zwmd-runner-other")
    before_start = event("FailedCreate", MISSING_SA, first=at(-600), last=at(-500))
    normal = event("SuccessfulCreate", f"Created pod: {JOB_NAME}-x7k2p", event_type="Normal")
    assert look(job(), events=[other, before_start, normal]).state is State.STARTING


def test_exceeded_quota_waits_for_the_deadline() -> None:
    quota = (
        f'Error creating: pods "{JOB_NAME}-x7k2p" is forbidden: exceeded quota: compute,'
        " requested: limits.memory=700Mi, used: limits.memory=3Gi, limited: limits.memory=3Gi"
    )
    failed_create = event("FailedCreate", quota, first=at(0), last=at(50), count=9)
    early = look(job(), events=[failed_create], now=at(60))
    assert early.state is State.STARTING
    assert early.recheck_at == at(0) + DEADLINE
    late = look(job(), events=[failed_create], now=at(0) + DEADLINE)
    assert (late.state, late.reason) == (State.FAILED, Reason.UNSCHEDULABLE)
    assert "exceeded quota" in late.message


# -- helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 seconds"), (1, "1 second"), (90, "1 minute 30 seconds"), (7200, "2 hours"),
     (3661, "1 hour 1 minute")],
)  # fmt: skip
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


def test_failed_create_recorded_as_an_events_k8s_io_v1_event() -> None:
    # the newer Event API: regarding/note/eventTime/series instead of involvedObject/message
    new_style = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": f"{JOB_NAME}.17f", "namespace": "zenml-workloads"},
        "regarding": {"apiVersion": "batch/v1", "kind": "Job", "name": JOB_NAME},
        "reason": "FailedCreate",
        "note": MISSING_SA,
        "type": "Warning",
        "eventTime": "2026-03-01T12:00:01.000000Z",
        "series": {"count": 4, "lastObservedTime": "2026-03-01T12:00:40.000000Z"},
        "reportingController": "job-controller",
        "reportingInstance": "kube-controller-manager",
        "action": "Create",
    }
    seen = look(job(), events=[new_style])
    assert (seen.state, seen.reason) == (State.FAILED, Reason.CREATE_FAILED)
    assert seen.message.endswith(MISSING_SA)
