"""LoadWatch (online/governor.py), the burst detector under MIGRATION_ONLINE_MAX_LOAD_RISE, on sample
sequences: what it calls a burst, how soon, and when a lasting rise becomes the usual level. (Against
a running backfill and real sessions: tests/test_online_control.py.)"""

from __future__ import annotations

from migrations_ops.online.governor import WRITES_MIN_RISE, WRITES_NOW_S, WRITES_WINDOW_S, LoadWatch

STEP = 0.1  # one sample per batch of about 100 ms


def feed(watch: LoadWatch, level: float, seconds: float, start: float, backing_off: bool = False) -> float:
    """Samples alternating around ``level`` (whole sessions, as pg_stat_activity counts them)."""
    at = start
    for index in range(round(seconds / STEP)):
        at += STEP
        low = int(level)
        watch.sample(low + (1 if index % 10 < (level - low) * 10 else 0), at, backing_off)
    return at


def test_no_verdict_while_warming_up_then_a_burst_within_a_second():
    watch = LoadWatch()
    at = feed(watch, 0.3, 1.5, 0.0)
    assert watch.rise(at) is None  # under WARM_S: no usual level yet
    at = feed(watch, 0.3, 5.0, at)
    assert watch.rise(at) is None  # the usual level itself is no burst
    at = feed(watch, 5, 1.0, at)
    assert watch.rise(at) is not None and watch.rise(at) > 3, (watch.now, watch.usual)


def test_a_small_rise_is_no_burst_however_large_the_ratio():
    watch = LoadWatch()
    at = feed(watch, 0.1, 10.0, 0.0)
    at = feed(watch, 0.9, 3.0, at)  # 9x, but less than one more statement at once
    assert watch.rise(at) is None, (watch.now, watch.usual)


def test_a_burst_stays_one_while_the_run_backs_off_but_a_lasting_rise_becomes_usual():
    watch = LoadWatch()
    at = feed(watch, 0.5, 10.0, 0.0)
    at = feed(watch, 5, 20.0, at, backing_off=True)  # a 20 s burst, the run backing off through it
    assert watch.rise(at) > 3, (watch.now, watch.usual)
    at = feed(watch, 5, 300.0, at, backing_off=True)  # it lasts: within minutes it is the usual level
    assert watch.rise(at) is None or watch.rise(at) < 3, (watch.now, watch.usual)


def test_the_level_it_learns_while_the_run_walks_follows_within_a_minute():
    watch = LoadWatch()
    at = feed(watch, 0.5, 10.0, 0.0)
    at = feed(watch, 4, 120.0, at)  # not backing off: a steady new level
    assert watch.rise(at) is None and watch.usual > 3.5, (watch.now, watch.usual)


def test_writing_transactions_per_second_need_a_rise_of_fifty_on_top_of_the_ratio():
    """The second reading, writing transactions per second over the last half second, sampled every
    batch of about 100 ms (Governor._load_burst)."""
    rates = LoadWatch(WRITES_MIN_RISE, WRITES_NOW_S)
    at = feed(rates, 200.0, 30.0, 0.0)  # 30 s at about 200/s, as pgbench's normal rate in bench_online_control.py
    assert rates.rise(at) is None
    at = feed(rates, 950.0, WRITES_WINDOW_S, at)  # 5x: the first window of the burst
    assert rates.rise(at) > 3, (rates.now, rates.usual)

    quiet = LoadWatch(WRITES_MIN_RISE, WRITES_NOW_S)
    at = feed(quiet, 2.0, 30.0, 0.0)
    at = feed(quiet, 8.0, 3.0, at)  # 4x of next to nothing
    assert quiet.rise(at) is None, (quiet.now, quiet.usual)
