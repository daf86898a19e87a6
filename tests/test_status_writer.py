"""The Study status writer: at most every EVERY_S, at once on a trial's or the study's end."""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from kubetune.kubernetes.status_writer import Status, StatusWriter


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Patches:
    def __init__(self, fail: int = 0) -> None:
        self.sent: list[Status] = []
        self.fail = fail  # refuse this many first

    def __call__(self, status: Status) -> None:
        if self.fail:
            self.fail -= 1
            raise ApiException(status=404, reason="Not Found")
        self.sent.append(status)


def writer(patches: Patches, clock: Clock) -> StatusWriter:
    return StatusWriter(patches, clock, every_s=5.0)


def test_the_first_status_goes_out_then_at_most_one_each_interval_the_newest() -> None:
    clock, patches = Clock(), Patches()
    w = writer(patches, clock)
    w.offer({"n": 1})
    clock.t += 1
    w.offer({"n": 2})
    clock.t += 3
    w.offer({"n": 3})
    assert patches.sent == [{"n": 1}]
    clock.t += 1
    w.flush()
    assert patches.sent == [{"n": 1}, {"n": 3}]
    w.flush()
    assert patches.sent == [{"n": 1}, {"n": 3}]


def test_a_trial_or_the_study_ending_goes_out_at_once() -> None:
    clock, patches = Clock(), Patches()
    w = writer(patches, clock)
    w.offer({"n": 1})
    clock.t += 0.1
    w.offer({"n": 2}, now=True)
    clock.t += 0.1
    w.offer({"n": 3}, now=True)
    assert patches.sent == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_an_unchanged_status_is_never_sent_again() -> None:
    clock, patches = Clock(), Patches()
    w = writer(patches, clock)
    w.offer({"n": 1})
    clock.t += 60
    w.offer({"n": 1})
    w.offer({"n": 1}, now=True)
    assert patches.sent == [{"n": 1}]


def test_a_refused_patch_is_tried_again_when_next_due_not_before() -> None:
    clock, patches = Clock(), Patches(fail=1)
    w = writer(patches, clock)
    w.offer({"n": 1})
    assert patches.sent == []
    clock.t += 1
    w.flush()
    assert patches.sent == []
    clock.t += 4
    w.flush()
    assert patches.sent == [{"n": 1}]
