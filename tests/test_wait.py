"""trustops.wait.until: returns what the condition found, retries only what it is told to, and
says what did not happen (with the last thing seen) when the time runs out."""
import time

import pytest

from trustops.wait import NotSettled, until


def test_returns_the_first_truthy_value_without_waiting_further():
    calls = iter([None, 0, "", "ready", "never reached"])
    assert until(lambda: next(calls), 5, "readiness", interval=0.01) == "ready"
    assert next(calls) == "never reached"


def test_runs_out_naming_what_did_not_happen_and_the_last_thing_seen():
    t0 = time.monotonic()
    with pytest.raises(NotSettled) as info:
        until(lambda: [], 0.3, "the backup appearing", interval=0.05)
    assert 0.3 <= time.monotonic() - t0 < 2
    assert str(info.value) == "the backup appearing did not happen within 0.3s (last seen: [])"
    assert isinstance(info.value, TimeoutError)


def test_retries_only_the_exceptions_it_is_given():
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("not yet")
        return True
    assert until(flaky, 5, "a listener", interval=0.01, retry_on=(OSError,)) is True and len(attempts) == 3
    with pytest.raises(NotSettled, match=r"a listener did not happen within 0.1s \(last seen: "
                                         r"ConnectionRefusedError: nope\)"):
        until(lambda: (_ for _ in ()).throw(ConnectionRefusedError("nope")), 0.1, "a listener", interval=0.01,
              retry_on=(OSError,))
    with pytest.raises(KeyError):   # not listed: a bug in the condition surfaces at once
        until(lambda: {}["x"], 5, "a key", retry_on=(OSError,))


def test_a_zero_timeout_checks_once():
    seen = []
    with pytest.raises(NotSettled):
        until(lambda: seen.append(1), 0, "anything")
    assert seen == [1]
