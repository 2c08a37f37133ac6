from workers.ml.progress import StepClock


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_left_comes_from_the_measured_step_rate_not_the_time_since_the_start():
    """30 s of reading the data, then 8 steps a second: 400 steps left is 50 s, not minutes."""
    clock = FakeClock()
    steps = StepClock(None, min_steps=5, clock=clock)
    clock.now = 30.0
    steps.step(1)
    assert steps.seconds_left(1, 401) is None  # one step known: no rate yet
    for n in range(2, 6):
        clock.now += 0.125
        steps.step(n)
    assert steps.seconds_left(5, 405) is None  # four steps measured: still too few
    clock.now += 0.125
    steps.step(6)
    assert steps.seconds_left(6, 406) == 50.0


def test_time_left_follows_the_recent_rate_and_never_passes_the_time_budget():
    clock = FakeClock()
    steps = StepClock(60.0, min_steps=5, window_s=10.0, clock=clock)
    for n in range(1, 101):  # 8 steps a second for 12.5 s
        clock.now += 0.125
        steps.step(n)
    for n in range(101, 121):  # then 2 steps a second for 10 s
        clock.now += 0.5
        steps.step(n)
    assert steps.steps_per_s() == 2.0  # the last 10 s, not the whole run
    assert steps.seconds_left(120, 140) == 10.0
    assert steps.seconds_left(120, 1000) == 37.5  # 60 s budget, 22.5 s spent
