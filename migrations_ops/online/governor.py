"""Between two batches of an online backfill: the operator's controls, back-off, and progress.

Before each batch the governor reads the run's ``control`` (written by ``online_control`` from any
shell or host, through the database) and the server's stress signals, and waits while either says
so: paused by an operator, or backing off because a standby lags (MIGRATION_ONLINE_MAX_REPLICA_LAG),
sessions queue on locks of the table or on rows (MIGRATION_ONLINE_MAX_LOCK_WAITERS), a transaction
holds back vacuum (MIGRATION_ONLINE_MAX_TRANSACTION_AGE), WAL is written faster than
MIGRATION_ONLINE_MAX_WAL_RATE or the application's load rises (MIGRATION_ONLINE_MAX_LOAD_RISE). With
MIGRATION_ONLINE_CHECKPOINT_PACING, once the walks have written half the WAL between two of the
server's checkpoints, it paces them at the rate those checkpoints are sized for. It waits between batches,
so the run then holds no transaction and no lock on the table (only its session-level lock on the
migration: a second run still exits 3). After each batch it sleeps what a rate limit and the pace
ask, and writes the run's ``progress`` for migration_status (at most
every PROGRESS_EVERY_S, and whenever the phase changes).

A back-off that lasts longer than MIGRATION_ONLINE_BACKOFF_WAIT (replica lag: REPLICA_WAIT) fails the
run, which then undoes itself; an operator's pause lasts until the operator continues it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from migrations_ops.engines.base import DatabaseEngine
from migrations_ops.errors import BadInput, OperationFailed
from migrations_ops.online import checkpoint
from migrations_ops.timeouts import setting_seconds

OPERATOR = "operator"
REPLICA_LAG = "replica_lag"
LOCK_WAITERS = "lock_waiters"
LONG_TRANSACTION = "long_transaction"
WAL_RATE = "wal_rate"
LOAD = "load"
CHECKPOINT = "checkpoint"
CAUSES = (OPERATOR, REPLICA_LAG, LOCK_WAITERS, LONG_TRANSACTION, WAL_RATE, LOAD, CHECKPOINT)
POLL_S = 0.2
PROGRESS_EVERY_S = 0.5  # progress is for watching: one write per batch was one more commit per batch
WAL_WINDOW_S = 0.5  # the WAL rate is measured over windows at least this long
# Writing transactions per second over the last half second (transaction ids: exact and at once, so
# the window needs no further averaging); every part of a second the run goes on into a burst is the
# application's p99 in it: backing off 1 s late left it at 1.67x the same burst with no migration.
WRITES_WINDOW_S = 0.5
WRITES_NOW_S = 0.1
WRITES_MIN_RISE = 50.0  # writing transactions per second above usual, at least
MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The back-off bounds, from the settings (0: that signal is not watched)."""

    max_replica_lag_s: float
    replica_wait_s: float
    max_lock_waiters: int
    max_transaction_age_s: float
    max_wal_rate_mb_s: float
    max_load_rise: float
    backoff_wait_s: float
    batch_pause_s: float
    checkpoint_pacing: bool = False

    @classmethod
    def from_settings(cls) -> Limits:
        names = "MIGRATION_ONLINE_MAX_LOCK_WAITERS / MAX_WAL_RATE / MAX_LOAD_RISE"
        try:
            waiters = int(settings.MIGRATION_ONLINE_MAX_LOCK_WAITERS)
            wal_rate = float(settings.MIGRATION_ONLINE_MAX_WAL_RATE)
            load_rise = float(settings.MIGRATION_ONLINE_MAX_LOAD_RISE)
        except (TypeError, ValueError) as exc:
            raise BadInput(f"{names}: {exc}") from None
        if waiters < 0 or wal_rate < 0 or load_rise < 0:
            raise BadInput(f"{names} cannot be negative")
        pacing = settings.MIGRATION_ONLINE_CHECKPOINT_PACING
        if not isinstance(pacing, bool):
            raise BadInput(f"MIGRATION_ONLINE_CHECKPOINT_PACING must be True or False: {pacing!r}")
        if 0 < load_rise <= 1:
            raise BadInput(f"MIGRATION_ONLINE_MAX_LOAD_RISE must be over 1 (a rise), or 0 (not watched): {load_rise:g}")
        return cls(
            max_replica_lag_s=setting_seconds("MIGRATION_ONLINE_MAX_REPLICA_LAG"),
            replica_wait_s=setting_seconds("MIGRATION_ONLINE_REPLICA_WAIT"),
            max_lock_waiters=waiters,
            max_transaction_age_s=setting_seconds("MIGRATION_ONLINE_MAX_TRANSACTION_AGE"),
            max_wal_rate_mb_s=wal_rate,
            max_load_rise=load_rise,
            backoff_wait_s=setting_seconds("MIGRATION_ONLINE_BACKOFF_WAIT"),
            batch_pause_s=setting_seconds("MIGRATION_ONLINE_BATCH_PAUSE"),
            checkpoint_pacing=pacing,
        )


class LoadWatch:
    """A level of the application's load, now against usually: a burst of it. The statements it runs
    at once (pg_stat_activity: no statistics delay), or its writing transactions per second.

    Sampled before each batch and at each poll of a back-off. ``now`` is an average over about
    ``now_s``; ``usual`` over about USUAL_S, and over BACKING_OFF_S while
    the run backs off for load, so that a burst does not become the usual level while it lasts, yet a
    lasting rise does within minutes instead of failing the run. The level is measured with the run's
    own batches going on, so the slower statements they cause are part of usual, not of a burst.
    """

    NOW_S = 0.5
    USUAL_S = 60.0
    BACKING_OFF_S = 300.0
    WARM_S = 2.0  # no verdict before the usual level has this many seconds of samples
    MIN_RISE = 1.0  # statements at once above usual, at least: a rise from 0.1 to 0.4 is no burst

    def __init__(self, min_rise: float = MIN_RISE, now_s: float = NOW_S) -> None:
        self.min_rise, self.now_s = min_rise, now_s
        self.now = 0.0
        self.usual = 0.0
        self._first: float | None = None
        self._last = 0.0

    def sample(self, active: int, at: float, backing_off: bool) -> None:
        if self._first is None:
            self._first, self._last, self.now, self.usual = at, at, float(active), float(active)
            return
        elapsed = max(at - self._last, 0.0)
        self._last = at
        self.now += (active - self.now) * (1 - math.exp(-elapsed / self.now_s))
        usual_s = self.BACKING_OFF_S if backing_off else self.USUAL_S
        if at - self._first < self.WARM_S:
            usual_s = self.now_s  # warming up: follow the samples
        self.usual += (active - self.usual) * (1 - math.exp(-elapsed / usual_s))

    def rise(self, at: float) -> float | None:
        """now / usual when it is a burst (None: not one, or not warm yet)."""
        if self._first is None or at - self._first < self.WARM_S:
            return None
        if self.now - self.usual < self.min_rise:
            return None
        return self.now / max(self.usual, 0.1)


@dataclass
class CheckpointPace:
    """The walks' WAL against the server's checkpoints.

    PostgreSQL starts a checkpoint after ``distance`` bytes of WAL (max_wal_size / (1 + checkpoint_
    completion_target)) or ``timeout_s`` (checkpoint_timeout), whichever comes first. A backfill that
    writes faster than distance / timeout_s forces checkpoint after checkpoint: each one writes the pages
    it dirtied, and after each, the first change of every page the application touches writes the whole
    page to the WAL. Measured at max_wal_size 1GB on a slow disk (bench/results-online-burst-max-wal-
    1gb.md): the run backed off for a burst of load, yet the application waited 186 ms at the median
    against 6 ms with no migration. So, when MIGRATION_ONLINE_CHECKPOINT_PACING is on, once the walks
    have written FREE_SHARE of the distance at full speed (a smaller backfill never paces), each batch
    is followed by a rest that keeps its WAL within that rate. Off by default, by measurement on a faster
    disk at 1GB: the 1M-row run took 13.5x as long and the burst's p99 was 1.66x against 1.36x without.
    """

    FREE_SHARE = 0.5

    distance: int
    timeout_s: float
    started_at: int  # the WAL position when the first walk began
    engaged: bool = False

    @property
    def bytes_per_s(self) -> float:
        return self.distance / self.timeout_s

    def rest_s(self, position: int, batch_bytes: int, batch_s: float) -> float:
        """The rest after a batch that wrote ``batch_bytes`` of WAL in ``batch_s``, the server's WAL now at
        ``position``; sets ``engaged`` the first time one is due."""
        if not self.engaged:
            if position - self.started_at < self.FREE_SHARE * self.distance:
                return 0.0
            self.engaged = True
        return max(batch_bytes / self.bytes_per_s - batch_s, 0.0)

    def detail(self) -> str:
        return (
            f"pacing WAL at {self.bytes_per_s / MB:.1f} MB/s, what the server's checkpoints are sized for "
            f"({self.distance / MB:.0f} MB per {self.timeout_s:g}s; raise max_wal_size to go faster)"
        )


@dataclass
class Walk:
    """One backfill's walk: what progress reports."""

    revision: str
    operation: int | None
    table: str
    pages_done: int = 0
    pages_total: int = 0
    rows_changed: int = 0
    batch_pages: int = 0
    started: float = field(default_factory=time.monotonic)
    pages_at_start: int = 0  # a resumed walk starts part way


class Governor:
    """One per online run: ``before_batch`` waits while paused or backing off, ``after_batch`` keeps
    the rate limit and the progress. ``emit(name, line, **fields)`` is the pipeline's event stream."""

    def __init__(
        self,
        engine: DatabaseEngine,
        using: str,
        run_id: int,
        emit: Callable[..., None],
        limits: Limits | None = None,
    ) -> None:
        self.engine, self.using, self.run_id, self.emit = engine, using, run_id, emit
        self.limits = limits or Limits.from_settings()
        self.pauses_s: dict[str, float] = {}
        self.retries = 0
        self.longest_lock_s = 0.0
        self.walk: Walk | None = None
        self._wal: tuple[float, int] | None = None
        self._wal_rate = 0.0
        self.load = LoadWatch()  # statements running at once
        self.writes = LoadWatch(WRITES_MIN_RISE, WRITES_NOW_S)  # writing transactions per second
        self._xids: deque[tuple[float, int]] = deque()  # (when, the next transaction id), the last seconds
        self._backing_off_for: str | None = None
        self._control: dict[str, Any] = {}
        self._reported: tuple[str, str | None, float] | None = None  # phase, cause, when
        self._reported_control: dict[str, Any] = {}
        self.pace: CheckpointPace | None = None
        self._batch_wal_from: int | None = None

    # ------------------------------------------------------------ the walk
    def start_walk(self, revision: str, operation: int | None, table: str, pages_total: int, done: int) -> None:
        self.walk = Walk(revision, operation, table, pages_done=done, pages_total=pages_total, pages_at_start=done)
        if self.limits.checkpoint_pacing and self.pace is None:
            spacing, position = self.engine.checkpoint_spacing(), self.engine.wal_position()
            if spacing is not None and position is not None and spacing[0] > 0 and spacing[1] > 0:
                self.pace = CheckpointPace(spacing[0], spacing[1], position)
        self._report("backfill")

    def before_batch(self) -> None:
        """Wait while an operator paused the run or a signal says back off; then return. Each poll's
        wait counts for the cause that held it."""
        self._hold()
        self._batch_wal_from = self.engine.wal_position() if self.pace is not None else None

    def _hold(self) -> None:
        self._wait_for_operator()
        cause, detail, bound = self._stress()
        if cause is None:
            return
        started = time.monotonic()
        self.emit(f"online_backoff_{cause}", f"  backing off: {detail}", cause=cause, detail=detail)
        while cause is not None:
            self._backing_off_for = cause
            self._report("backing off", cause=cause, detail=detail)
            if time.monotonic() - started > bound:
                raise OperationFailed(f"backed off for more than {bound:g}s: {detail}")
            polled = time.monotonic()
            time.sleep(POLL_S)
            self._paused(cause, time.monotonic() - polled)
            self._wait_for_operator()  # an operator's pause can come during a back-off
            cause, detail, _ = self._stress()
        self._backing_off_for = None

    def after_batch(self, pages: int, changed: int, seconds: float, next_pages: int) -> None:
        """Count the batch, write the progress, and sleep what the rate limit and the batch pause ask."""
        walk = self.walk
        if walk is not None:
            walk.pages_done += pages
            walk.rows_changed += changed
            walk.batch_pages = next_pages
            walk.pages_total = max(walk.pages_total, walk.pages_done)
        # The walk's first batch is shown at once: a watcher learns the walk is moving.
        first = walk is not None and walk.pages_done - pages == walk.pages_at_start
        self._report("backfill", force=first)
        self._rest(changed, seconds, self._pacing_s(seconds))

    def _pacing_s(self, seconds: float) -> float:
        """The rest the checkpoint pace asks after a batch of ``seconds`` (0 when not pacing)."""
        pace, start = self.pace, self._batch_wal_from
        position = self.engine.wal_position() if pace is not None and start is not None else None
        if pace is None or start is None or position is None:
            return 0.0
        engaged = pace.engaged
        rest = pace.rest_s(position, position - start, seconds)
        if pace.engaged and not engaged:
            self.emit(f"online_backoff_{CHECKPOINT}", f"  {pace.detail()}", cause=CHECKPOINT, detail=pace.detail())
        return rest

    def _rest(self, changed: int, seconds: float, pacing_s: float = 0.0) -> None:
        """Sleep what the batch pause, the rate limit and the checkpoint pace ask after a batch that
        changed ``changed`` rows in ``seconds``; in slices, reading the control between them, so that a
        pause, a new limit or --clear takes effect at once (a limit of 100 rows/s after a batch of 1,600
        rows slept 16 s). A rest the pace alone asks for counts as backing off for checkpoints."""
        started = time.monotonic()
        while True:
            control = self._control
            pause = float(control.get("batch_pause_s") or self.limits.batch_pause_s)
            rows_per_s = float(control.get("rows_per_second") or 0)
            if rows_per_s > 0 and changed:
                pause = max(pause, changed / rows_per_s - seconds)
            pacing = pacing_s > pause
            pause = max(pause, pacing_s)
            left = pause - (time.monotonic() - started)
            if left <= 0 or control.get("paused"):
                return
            slept_from = time.monotonic()
            time.sleep(min(left, POLL_S))
            self._control = checkpoint.read_control(self.using, self.run_id)
            if pacing and self.pace is not None:
                self._paused(CHECKPOINT, time.monotonic() - slept_from)
                self._report("backing off", cause=CHECKPOINT, detail=self.pace.detail())
            else:
                self._report("backfill")

    def set_total(self, pages_total: int) -> None:
        if self.walk is not None:
            self.walk.pages_total = pages_total

    # ------------------------------------------------------------ waiting
    def _wait_for_operator(self) -> None:
        self._control = checkpoint.read_control(self.using, self.run_id)
        if not self._control.get("paused"):
            return
        started = time.monotonic()
        who = self._control.get("changed_by", "an operator")
        self.emit("online_paused", f"  paused by {who}: waiting for online_control continue", by=who)
        while self._control.get("paused"):
            self._report("paused", cause=OPERATOR, detail=f"paused by {who}")
            time.sleep(POLL_S)
            self._control = checkpoint.read_control(self.using, self.run_id)
        waited = time.monotonic() - started
        self._paused(OPERATOR, waited)
        self.emit(
            "online_continued",
            f"  continued by {self._control.get('changed_by', 'an operator')} after {waited:.1f}s",
            by=self._control.get("changed_by"),
            paused_s=round(waited, 3),
        )

    def _stress(self) -> tuple[str | None, str, float]:
        """The first signal above its bound: (cause, what it measured, how long to back off at most)."""
        limits, engine = self.limits, self.engine
        table = self.walk.table if self.walk else ""
        if limits.max_replica_lag_s > 0:
            lag = engine.replica_lag_seconds()
            if lag > limits.max_replica_lag_s:
                bound = f"bound {limits.max_replica_lag_s:g}s"
                return REPLICA_LAG, f"a standby is {lag:.1f}s behind ({bound})", limits.replica_wait_s
        if limits.max_lock_waiters > 0 and table:
            waiters = engine.lock_waiters(table)
            if waiters >= limits.max_lock_waiters:
                detail = f"{waiters} session(s) queue on locks of {table} (bound {limits.max_lock_waiters})"
                return LOCK_WAITERS, detail, limits.backoff_wait_s
        if limits.max_transaction_age_s > 0:
            age = engine.oldest_transaction_s()
            if age > limits.max_transaction_age_s:
                bound = f"bound {limits.max_transaction_age_s:g}s"
                detail = f"a transaction open for {age:.0f}s holds back vacuum ({bound})"
                return LONG_TRANSACTION, detail, limits.backoff_wait_s
        if limits.max_wal_rate_mb_s > 0:
            rate = self._wal_rate_mb_s()
            if rate > limits.max_wal_rate_mb_s:
                detail = f"WAL written at {rate:.1f} MB/s (bound {limits.max_wal_rate_mb_s:g} MB/s)"
                return WAL_RATE, detail, limits.backoff_wait_s
        if limits.max_load_rise > 0:
            detail = self._load_burst(limits.max_load_rise)
            if detail:
                return LOAD, detail, limits.backoff_wait_s
        return None, "", 0.0

    def _load_burst(self, bound: float) -> str:
        """What says the application's load rose past ``bound`` times its usual level ("" when nothing
        does): its statements at once (on a slow server, a burst keeps more of them waiting) or its
        writing transactions per second (on a fast one, 5x the transactions may still seldom overlap:
        measured, 1.3 statements at once against 0.4). Transactions are counted by the ids the server
        hands out, at once: pg_stat_database's commits reach the view up to a second late, and a back-off
        that began 5 s into a 20 s burst left the application's p99 at 2.9x."""
        backing_off, now = self._backing_off_for == LOAD, time.monotonic()
        # Both readings are sampled every time: each learns its own usual level.
        active = self.engine.active_sessions()
        if active is not None:
            self.load.sample(active, now, backing_off)
        xid = self.engine.next_transaction_id()
        rate = self._writes_per_s(xid, now) if xid is not None else None
        if rate is not None:
            self.writes.sample(rate, now, backing_off)
        readings = ((self.load, "statements at once", 1), (self.writes, "writing transactions/s", 0))
        said = [
            (
                rise,
                f"the application runs {watch.now:.{digits}f} {what} against a usual {watch.usual:.{digits}f} "
                f"({rise:.1f}x, bound {bound:g}x)",
            )
            for watch, what, digits in readings
            if (rise := watch.rise(now)) is not None and rise > bound
        ]
        return max(said)[1] if said else ""

    def _writes_per_s(self, xid: int, now: float) -> float | None:
        """Transaction ids handed out per second over the last WRITES_WINDOW_S or more (None until then)."""
        self._xids.append((now, xid))
        while len(self._xids) > 2 and now - self._xids[1][0] >= WRITES_WINDOW_S:
            self._xids.popleft()
        since, first = self._xids[0]
        if now - since < WRITES_WINDOW_S:
            return None
        return (xid - first) / (now - since)

    def _wal_rate_mb_s(self) -> float:
        """MB of WAL per second over the last window of at least WAL_WINDOW_S (batches are shorter: one
        batch's WAL over its few milliseconds says little); 0 until a window has passed."""
        position, now = self.engine.wal_position(), time.monotonic()
        if position is None:
            return 0.0
        if self._wal is None:
            self._wal = (now, position)
            return 0.0
        since, start = self._wal
        if now - since >= WAL_WINDOW_S:
            self._wal_rate = (position - start) / MB / (now - since)
            self._wal = (now, position)
        return self._wal_rate

    def _paused(self, cause: str, seconds: float) -> None:
        self.pauses_s[cause] = self.pauses_s.get(cause, 0.0) + seconds

    # ------------------------------------------------------------ progress
    def _report(self, phase: str, cause: str | None = None, detail: str = "", force: bool = False) -> None:
        """Write the progress when the phase, its cause or the operator's control changed (a watcher sees
        the change taken), else at most every PROGRESS_EVERY_S."""
        now = time.monotonic()
        last = self._reported
        same = last is not None and last[:2] == (phase, cause) and self._control == self._reported_control
        if not force and same and now - last[2] < PROGRESS_EVERY_S:
            return
        self._reported, self._reported_control = (phase, cause, now), self._control
        checkpoint.save_progress(self.using, self.run_id, self.progress(phase, cause, detail))

    def progress(self, phase: str = "backfill", cause: str | None = None, detail: str = "") -> dict[str, Any]:
        walk = self.walk
        document: dict[str, Any] = {
            "phase": phase,
            "waiting_for": cause,
            "detail": detail,
            "pauses_s": {key: round(value, 3) for key, value in self.pauses_s.items()},
            "retries": self.retries,
            "longest_lock_s": round(self.longest_lock_s, 4),
            "control": {key: value for key, value in self._control.items() if key != "changed_at"},
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if walk is not None:
            # The ETA follows the walk's pace as it is (pauses and limits included), not its batches'.
            walked = walk.pages_done - walk.pages_at_start
            elapsed = time.monotonic() - walk.started
            rate = walked / elapsed if walked > 0 and elapsed > 0 else 0.0
            left = max(walk.pages_total - walk.pages_done, 0)
            document.update(
                revision=walk.revision,
                operation=walk.operation,
                table=walk.table,
                pages_done=walk.pages_done,
                pages_total=walk.pages_total,
                rows_changed=walk.rows_changed,
                pages_per_s=round(rate, 1),
                eta_s=round(left / rate, 1) if rate > 0 else None,
                batch_pages=walk.batch_pages,
            )
        return document
