"""The bounds on on-demand lookups (verifier.claims.Lookups) and their backoff."""

from datetime import timedelta

from verifier.claims import BACKOFF_CAP, Lookups, backoff


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lookups_are_bounded_in_flight_and_per_second():
    clock = Clock()
    lookups = Lookups(concurrency=2, rate=3, clock=clock)
    assert [lookups.take() for _ in range(3)] == [True, True, False]  # 2 at once
    lookups.give_back(unused=False)
    lookups.give_back(unused=False)
    assert lookups.take() is True  # the third token of the second
    lookups.give_back(unused=False)
    assert lookups.take() is False  # the bucket is empty
    clock.now = 1 / 3
    assert lookups.take() is True  # one more token a third of a second later
    lookups.give_back(unused=True)  # not used: its token comes back
    assert lookups.take() is True
    assert lookups.started == 3


def test_backoff_doubles_up_to_its_cap():
    base = timedelta(seconds=2)
    assert [backoff(base, n) for n in range(5)] == [
        timedelta(seconds=s) for s in (2, 4, 8, 16, 16)]
    assert backoff(base, 10_000) == BACKOFF_CAP
    assert backoff(timedelta(seconds=30), 3) == timedelta(seconds=30)  # never below the base
