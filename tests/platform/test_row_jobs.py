"""``picterra.jobs.run_row_job``: the one place a job's start, heartbeat, success and failure reach its row.

A recording ``RowState`` stands in for a row (the real ones, in imagery.ingest and detectors.runs, are
exercised end to end by tests/workers); here each outcome of the work is checked to write what it should,
and only that.
"""

from __future__ import annotations

import threading

import pytest

from picterra.jobs import (
    FAILED,
    RUNNING,
    RUNNING_ELSEWHERE,
    JobFailed,
    RetryLater,
    RowMoved,
    RowState,
    run_row_job,
)


class Recorder(RowState):
    def __init__(self, claim: str = RUNNING, retry_after: int | None = None, store_error: Exception | None = None):
        self.answer, self.retry, self.store_error = claim, retry_after, store_error
        self.calls: list[tuple] = []
        self.beaten = threading.Event()

    def claim(self, row_id: str) -> str:
        self.calls.append(("claim", row_id))
        return self.answer

    def beat(self, row_id: str) -> None:
        self.beaten.set()

    def succeed(self, row_id: str, result) -> str:
        self.calls.append(("succeed", row_id, result))
        if self.store_error is not None:
            raise self.store_error
        return "done"

    def fail(self, row_id: str, message: str) -> None:
        self.calls.append(("fail", row_id, message))

    def unexpected_failure(self, error: Exception) -> str:
        return f"unexpected: {type(error).__name__}"

    def retry_after(self, row_id: str, error: Exception) -> int | None:
        self.calls.append(("retry_after", row_id, str(error)))
        return self.retry


def test_a_claimed_row_stores_what_the_work_returns():
    state = Recorder()
    assert run_row_job(state, "7", lambda row_id: {"found": int(row_id)}) == "done"
    assert state.calls == [("claim", "7"), ("succeed", "7", {"found": 7})]


@pytest.mark.parametrize("answer", [RUNNING_ELSEWHERE, "succeeded", "cancelled", FAILED, "deleted"])
def test_a_row_not_claimed_is_left_alone_and_the_work_never_runs(answer):
    state = Recorder(claim=answer)

    def work(row_id):
        raise AssertionError("the work ran on a row it did not claim")

    assert run_row_job(state, "7", work) == answer
    assert state.calls == [("claim", "7")]


def test_a_plain_failure_fails_the_row_with_its_message_and_is_not_retried():
    state = Recorder(retry_after=5)

    def work(row_id):
        raise JobFailed("This file is not an image we can read.")

    assert run_row_job(state, "7", work) == FAILED
    assert state.calls == [("claim", "7"), ("fail", "7", "This file is not an image we can read.")]


def test_a_row_that_moved_meanwhile_is_not_written():
    state = Recorder()

    def work(row_id):
        raise RowMoved("cancelled")

    assert run_row_job(state, "7", work) == "cancelled"
    assert state.calls == [("claim", "7")]


def test_an_error_the_row_retries_puts_it_back_and_asks_for_a_retry():
    state = Recorder(retry_after=4)

    def work(row_id):
        raise OSError("disk went away")

    with pytest.raises(RetryLater) as raised:
        run_row_job(state, "7", work)
    assert raised.value.countdown == 4 and isinstance(raised.value.__cause__, OSError)
    assert state.calls == [("claim", "7"), ("retry_after", "7", "disk went away")]


def test_an_error_past_its_retries_fails_the_row_in_plain_words_and_reaches_the_log():
    state = Recorder(retry_after=None)

    def work(row_id):
        raise KeyError("internal detail")

    with pytest.raises(KeyError):
        run_row_job(state, "7", work)
    assert state.calls[-1] == ("fail", "7", "unexpected: KeyError")


def test_the_heartbeat_moves_while_the_work_runs_and_stops_after(settings):
    settings.JOB_HEARTBEAT_EVERY_S = 0.01
    state = Recorder()

    def work(row_id):
        # Waits on the beat itself, never on a clock: the work ends once a beat has reached the row.
        assert state.beaten.wait(timeout=30)
        return "ok"

    assert run_row_job(state, "7", work) == "done"
    assert [t.name for t in threading.enumerate() if t.name == "job-heartbeat"] == []


def test_an_error_while_storing_is_retried_like_one_in_the_work():
    state = Recorder(retry_after=2, store_error=OSError("database connection lost"))
    with pytest.raises(RetryLater) as raised:
        run_row_job(state, "7", lambda row_id: "found")
    assert raised.value.countdown == 2
    assert state.calls == [("claim", "7"), ("succeed", "7", "found"), ("retry_after", "7", "database connection lost")]
