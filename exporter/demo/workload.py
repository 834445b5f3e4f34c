"""A synthetic app that keeps the monitor busy: the tuner app and the LED-matrix plugins.

A new user needs to see every feature of the monitor within seconds, without writing an
app first: several error groups of every severity, breadcrumbs, users and sessions
(clean, errored and crashed), timed operations, recoveries that work and fail, and now and
then a storm that trips a pattern and turns a plugin unhealthy. Everything is driven by a
seeded ``random.Random`` so a run can be repeated.

After a while (``deploy_after``) the app "deploys" its next version without a restart, the
way release health is shown: a group seen so far is resolved ("fixed in the next version"),
the monitor switches to the next app version, and the new version raises an error type no
earlier version raised (new in that version) and the resolved error again (a regression).

Beside the app a worker thread runs background jobs (``reports.build``, ``emails.send``,
``billing.charge``; :class:`BackgroundJobs`) the way the Celery integration reports tasks:
each run a unit of work with outcome ok, error, retry or ignored, retries counted with their
cause, so the drill-down's Background jobs row and the task alert have data.

The errors are really raised from a handful of distinct functions, so the monitor's
grouping by traceback yields distinct groups with real file:line locations.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter import handle_errors

COMPONENTS = ("ECUControl", "CANInterface", "MainWindow", "DataLogger")
PLUGINS = ("weather", "stocks", "clock", "news")
USERS = ("alice", "bob", "carol", "dave", "erin", "frank")

log = logging.getLogger("demo.app")
# The demo logs on purpose; without a handler Python's last-resort handler would print
# every warning to stderr and garble the live view.
logging.getLogger("demo").addHandler(logging.NullHandler())


class CANBusError(Exception):
    """A CAN bus fault: the tuner app's own exception type."""


class LaunchControlError(Exception):
    """The next version's new feature failing: an error no earlier version raised."""


# -- the functions that fail: one group each ------------------------------------------


def read_ecu_sensors(rng: random.Random, fail: bool) -> dict[str, float]:
    if fail:
        raise TimeoutError("ECU sensor poll timed out after 250 ms")
    return {"rpm": rng.uniform(800, 7000), "afr": rng.uniform(11.5, 15.0)}


def flash_ecu_map(rng: random.Random, fail: bool) -> int:
    if fail:
        cell = rng.randrange(256)
        raise ValueError(f"fuel map cell {cell} out of range (must be 0..100)")
    return rng.randrange(1, 5)


def send_can_frame(rng: random.Random, fail: bool) -> int:
    if fail:
        raise CANBusError("bus-off state on can0: too many transmit errors")
    return rng.randrange(0x100, 0x7FF)


def read_can_frame(rng: random.Random, fail: bool) -> bytes:
    if fail:
        raise CANBusError("frame checksum mismatch on can0")
    return bytes(rng.randrange(256) for _ in range(8))


def render_dashboard(rng: random.Random, fail: bool) -> int:
    if fail:
        raise RuntimeError("widget tree modified during render")
    return rng.randrange(30, 61)


def write_log_chunk(rng: random.Random, fail: bool) -> int:
    if fail:
        raise OSError(28, "No space left on device", "/var/log/tuner/session.log")
    return rng.randrange(512, 8192)


def fetch_weather(rng: random.Random, fail: bool) -> float:
    if fail:
        raise ConnectionError("weather API unreachable: api.weather.example")
    return rng.uniform(-5, 35)


def parse_stock_quote(rng: random.Random, fail: bool) -> float:
    quote: dict[str, float] = {"volume": rng.uniform(1e3, 1e6), "price": rng.uniform(10, 200)}
    if fail:
        del quote["price"]
    return float(quote["price"])


def sync_clock(rng: random.Random, fail: bool) -> float:
    if fail:
        raise ValueError("unknown timezone 'Mars/Olympus_Mons'")
    return rng.uniform(-0.5, 0.5)


def fetch_news(rng: random.Random, fail: bool) -> int:
    if fail:
        raise TimeoutError("news feed did not answer within 5 s")
    return rng.randrange(1, 20)


def arm_launch_control(rng: random.Random, fail: bool) -> float:
    """Launch control, the feature the deploy adds: its failures are new in that version."""
    if fail:
        raise LaunchControlError("launch control armed without a clutch switch signal")
    return rng.uniform(3000, 5000)


def allocate_frame_buffer(rng: random.Random, fail: bool) -> bytearray:
    """Fails with MemoryError: the critical error of the demo."""
    if fail:
        raise MemoryError(f"cannot allocate {rng.randrange(64, 512)} MiB frame buffer")
    return bytearray(16)


@dataclass(frozen=True)
class Operation:
    """A timed operation of one component (and maybe one plugin).

    ``failure_weight`` is its share of the failures: plugins fail rarely on their own, so
    that it is the storms that turn them unhealthy.
    """

    name: str
    component: str
    plugin: str
    func: Callable[[random.Random, bool], Any]
    failure_weight: float
    severity: str | None = None


OPERATIONS = (
    Operation("read_sensors", "ECUControl", "", read_ecu_sensors, 0.15),
    Operation("send_frame", "CANInterface", "", send_can_frame, 0.2, "high"),
    Operation("render_dashboard", "MainWindow", "", render_dashboard, 0.1),
    Operation("flush_log", "DataLogger", "", write_log_chunk, 0.05),
    Operation("update", "MainWindow", "weather", fetch_weather, 0.06),
    Operation("update", "MainWindow", "stocks", parse_stock_quote, 0.05, "low"),
    Operation("display", "MainWindow", "clock", sync_clock, 0.03, "low"),
    Operation("update", "MainWindow", "news", fetch_news, 0.04),
)
STORM_OPERATIONS = ("weather", "stocks", "send_frame")
# Added by the deploy: new in the next version, and failing now and then from then on.
LAUNCH_CONTROL = Operation("launch_control", "ECUControl", "", arm_launch_control, 0.05)
CRASH_SHARE = 0.2  # of the gaps between sessions, filled by a short session that crashes


# -- the background jobs: a Celery worker's tasks, without Celery ------------------------

# The demo's jobs stand in for a Celery worker's tasks: they are timed and reported as the
# Celery integration reports a task (a WorkScope of component "celery" named after the task,
# outcome ok / error / retry / ignored, retries in app_task_retries_total), so that the
# drill-down's Background jobs row and ErrorExporterTaskFailureRatioHigh, which select
# component=~"celery|rq", show them. No Celery (nor a broker) is involved.
JOB_COMPONENT = "celery"
JOB_MECHANISM = "demo_jobs"
JOB_MAX_RETRIES = 2


class SMTPServerDisconnected(ConnectionError):
    """The mail relay hung up: the email task asks to run again later."""


class CardDeclined(Exception):
    """An expected outcome of a charge (Celery's ``task.throws``): ignored, not an error."""


class JobRetry(Exception):
    """A task asking to run again later (Celery's ``Task.retry``), with its cause."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"retry: {cause!r}")
        self.cause = cause


def build_report(rng: random.Random, fate: str, sleep: Callable[[float], Any]) -> int:
    """reports.build: slow; now and then the export it reads lacks a column (a real bug)."""
    sleep(rng.uniform(0.15, 0.8))
    rows = {"date": 1, "amount": 2, "region": 3}
    if fate == "error":
        del rows["region"]
    return rows["region"] * rng.randrange(100, 5000)


def send_email(rng: random.Random, fate: str, sleep: Callable[[float], Any]) -> str:
    """emails.send: fast; the relay drops the connection now and then (retried, and after
    the last retry the task fails of it)."""
    sleep(rng.uniform(0.01, 0.12))
    if fate == "retry":
        try:
            raise SMTPServerDisconnected("mail relay smtp.example closed the connection")
        except SMTPServerDisconnected as exc:
            raise JobRetry(exc) from exc
    return f"<{rng.randrange(10**8)}@mail.example>"


def charge_card(rng: random.Random, fate: str, sleep: Callable[[float], Any]) -> float:
    """billing.charge: the gateway times out now and then (retried), cards are declined
    (ignored) and, rarely, an invoice has an amount the gateway refuses (an error)."""
    sleep(rng.uniform(0.05, 0.4))
    if fate == "retry":
        try:
            raise TimeoutError("payment gateway did not answer within 10 s")
        except TimeoutError as exc:
            raise JobRetry(exc) from exc
    if fate == "ignored":
        raise CardDeclined("card declined: insufficient funds")
    amount = rng.uniform(5, 500)
    if fate == "error":
        raise ValueError(f"invoice amount {-amount:.2f} must be positive")
    return amount


@dataclass(frozen=True)
class JobTask:
    """A task of the demo's worker: its function, queue and the odds of each outcome."""

    name: str
    queue: str
    func: Callable[..., Any]
    odds: tuple[tuple[str, float], ...]  # (outcome, probability); the rest is "ok"
    weight: float  # its share of the jobs


JOB_TASKS = (
    # Fails about 15 % of its runs: over ErrorExporterTaskFailureRatioHigh's 10 %, so the
    # alert fires on a demo left running (for: 10m).
    JobTask("reports.build", "reports", build_report, (("error", 0.15),), 0.25),
    JobTask("emails.send", "emails", send_email, (("retry", 0.12),), 0.45),
    JobTask(
        "billing.charge",
        "billing",
        charge_card,
        (("retry", 0.06), ("ignored", 0.1), ("error", 0.03)),
        0.3,
    ),
)


@dataclass
class _Job:
    task: JobTask
    task_id: str
    args: dict[str, Any]
    retries: int = 0


class BackgroundJobs:
    """A worker thread's loop of background jobs, each a unit of work (``WorkScope``).

    A job that asks to be retried counts a retry with its cause (``count_task_retry``) and
    runs again a little later; after ``JOB_MAX_RETRIES`` it fails of its cause instead. A
    declined card is an expected outcome (``ignored``). The unit's error carries the task's
    context (id, name, queue, retries, args). ``sleep`` is how a task spends its (real)
    duration: ``run`` waits on its stop event, a test may pass a no-op.
    """

    def __init__(
        self, monitor: Any, seed: int = 0, sleep: Callable[[float], Any] | None = None
    ) -> None:
        self.monitor = monitor
        self.rng = random.Random(seed)
        self.sleep: Callable[[float], Any] = sleep or time.sleep
        self.counts: Counter[str] = Counter()
        self._retries: list[_Job] = []
        self._next_id = 0
        # Held while a job runs: the deploy primes the failures with it (see prime_failures).
        self.lock = threading.Lock()
        self.failed: set[tuple[str, str]] = set()  # (task, fate): the failures seen

    def run(self, stop_event: threading.Event, rate: float = 4.0) -> None:
        """Runs jobs until ``stop_event`` is set, about ``rate`` a second; never raises."""
        self.sleep = stop_event.wait
        while not stop_event.is_set():
            try:
                self.run_one()
            except Exception:  # a demo must outlive a bug in what it demonstrates
                self.counts["job_failures"] += 1
            stop_event.wait(self.rng.uniform(0.0, 0.5) / rate)

    def run_one(self) -> str:
        """Runs the next job (a due retry first); returns its outcome."""
        if self._retries and (len(self._retries) > 3 or self.rng.random() < 0.5):
            job = self._retries.pop(0)
        else:
            task = self.rng.choices(JOB_TASKS, weights=[t.weight for t in JOB_TASKS])[0]
            job = self._new_job(task)
        fate = self._fate(job)
        with self.lock:
            return self._execute(job, fate)

    def prime_failures(self) -> None:
        """Fails once each way a task can fail (its error, its last retry) that has not
        failed yet, so that the jobs' error groups exist before a deploy: the deploy's new
        error group stays the only one new in the next version."""
        with self.lock:
            for task in JOB_TASKS:
                for fate, _ in task.odds:
                    if fate in ("error", "retry") and (task.name, fate) not in self.failed:
                        job = self._new_job(task)
                        job.retries = JOB_MAX_RETRIES  # a retry now gives up: an error
                        self._execute(job, fate, sleep=lambda seconds: None)

    def _new_job(self, task: JobTask) -> _Job:
        self._next_id += 1
        rng = self.rng
        args: dict[str, Any] = {
            "reports.build": lambda: {
                "report": rng.choice(["sales", "churn", "usage"]),
                "month": f"2026-{rng.randrange(1, 13):02d}",
            },
            "emails.send": lambda: {
                "template": rng.choice(["welcome", "invoice", "reset"]),
                "to": f"{rng.choice(USERS)}@example.com",
            },
            "billing.charge": lambda: {"invoice": f"INV-{rng.randrange(10000, 99999)}"},
        }[task.name]()
        return _Job(task, f"{task.queue}-{self._next_id:06d}", args)

    def _fate(self, job: _Job) -> str:
        if job.retries:  # the cause of the retry is often still there
            return "retry" if self.rng.random() < 0.5 else "ok"
        roll = self.rng.random()
        for outcome, odds in job.task.odds:
            if roll < odds:
                return outcome
            roll -= odds
        return "ok"

    def _execute(self, job: _Job, fate: str, sleep: Callable[[float], Any] | None = None) -> str:
        from exporter.integrations.scope import WorkScope

        task = job.task
        scope = WorkScope(
            self.monitor,
            component=JOB_COMPONENT,
            operation=task.name,
            breadcrumb=f"task {task.name}",
            breadcrumb_data={"task_id": job.task_id, "queue": task.queue},
            category="task",
            mechanism=JOB_MECHANISM,
            describe=lambda: {
                "task": {
                    "id": job.task_id,
                    "name": task.name,
                    "queue": task.queue,
                    "retries": job.retries,
                    "args": dict(job.args),
                }
            },
        )
        outcome = "ok"
        scope.begin()
        try:
            task.func(self.rng, fate, sleep or self.sleep)
        except JobRetry as retry:
            cause = retry.cause
            if job.retries < JOB_MAX_RETRIES:
                self.monitor.count_task_retry(JOB_COMPONENT, task.name, type(cause).__name__)
                outcome = "retry"
                job.retries += 1
                self._retries.append(job)
            else:  # no retry left: the task fails of its cause
                scope.fail(cause)
                outcome = "error"
        except CardDeclined:
            outcome = "ignored"
        except Exception as exc:
            scope.fail(exc)
            outcome = "error"
        finally:
            scope.end(outcome == "ok" if outcome in ("ok", "error") else outcome)
        if outcome == "error":
            self.failed.add((task.name, fate))
        self.counts[outcome] += 1
        self.counts[f"{task.name} {outcome}"] += 1
        return outcome


@dataclass(frozen=True)
class Deploy:
    """What the simulated deploy did (``Workload.deploy``)."""

    from_version: str | None
    to_version: str
    resolved_error_id: str | None  # the group resolved before it, then seen again after it
    new_error_type: str


def next_version(version: str | None) -> str:
    """The version the demo deploys after ``version``: the next minor (1.0.0 -> 1.1.0, 2.4 ->
    2.5), or ``<version>-next`` when it is not made of numbers."""
    parts = (version or "1.0.0").split(".")
    if len(parts) >= 2 and all(part.isdigit() for part in parts):
        return ".".join([parts[0], str(int(parts[1]) + 1), *("0" for _ in parts[2:])])
    return f"{version}-next"


@dataclass
class _Session:
    session_id: str
    user_id: str
    steps_left: int
    fate: str  # "exited" or "errored"


class Workload:
    """Drives a monitor like a busy app would, about ``rate`` errors per second.

    ``step()`` is one tick (a few operations and exactly one failure, roughly);
    ``run()`` repeats it until stopped, with a storm every ``storm_every`` seconds and, after
    ``deploy_after`` seconds (None: never), the deploy of ``next_version``. Beside it a
    worker thread runs background jobs (:class:`BackgroundJobs`, about ``jobs_rate`` a
    second; 0: none).
    With ``storm=True`` every tick is a critical MemoryError in the news plugin (no deploy,
    no jobs).
    """

    def __init__(
        self,
        monitor: Any,
        rate: float = 5.0,
        seed: int = 0,
        storm_every: float = 30.0,
        *,
        storm: bool = False,
        storm_size: int = 20,
        clock: Callable[[], float] = time.monotonic,
        deploy_after: float | None = None,
        next_version: str | None = None,
        jobs_rate: float = 4.0,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 errors per second, got {rate}")
        self.monitor = monitor
        self.rate = rate
        self.rng = random.Random(seed)
        self.storm_every = storm_every
        self.storm_mode = storm
        self.storm_size = storm_size
        self.clock = clock
        self.deploy_after = deploy_after
        self.next_version = next_version
        self.deployed: Deploy | None = None
        self.counts: Counter[str] = Counter()
        self.jobs_rate = jobs_rate
        self.jobs = None if storm or jobs_rate <= 0 else BackgroundJobs(monitor, seed=seed + 1)
        self._session: _Session | None = None
        self._storm_turn = 0
        self._operations: tuple[Operation, ...] = OPERATIONS  # the deploy adds LAUNCH_CONTROL
        self._ops = {self._key(op): self._timed(op) for op in (*OPERATIONS, LAUNCH_CONTROL)}
        self._flash_error_id: str | None = None  # a group the deploy can resolve
        self._buffer_op = handle_errors(
            component="MainWindow",
            plugin="news",
            operation="allocate_buffer",
            severity="critical",
            reraise=False,
            monitor=monitor,
        )(allocate_frame_buffer)

    @staticmethod
    def _key(op: Operation) -> str:
        return op.plugin or op.name

    def _timed(self, op: Operation) -> Callable[[random.Random, bool], Any]:
        recovery = self._cached_forecast if op.plugin == "weather" else None
        wrapped: Callable[[random.Random, bool], Any] = handle_errors(
            component=op.component,
            plugin=op.plugin,
            operation=op.name,
            severity=op.severity,
            reraise=False,
            recovery=recovery,
            monitor=self.monitor,
        )(op.func)
        return wrapped

    def _cached_forecast(self, exc: BaseException) -> float:
        """The weather plugin's fallback: a cached forecast, when there is a fresh one."""
        if self.rng.random() < 0.5:
            raise LookupError("no cached forecast younger than 30 min") from exc
        return 21.0

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop_event: threading.Event, duration: float | None = None) -> None:
        """Steps until ``stop_event`` is set or ``duration`` seconds passed; never raises."""
        start = self.clock()
        next_storm = start + self.storm_every
        deploy_at = (
            None if self.deploy_after is None or self.storm_mode else start + self.deploy_after
        )
        jobs_stop = threading.Event()
        worker = None
        if self.jobs is not None:
            worker = threading.Thread(
                target=self.jobs.run,
                args=(jobs_stop, self.jobs_rate),
                name="demo-jobs",
                daemon=True,
            )
            worker.start()
        try:
            while not stop_event.is_set():
                now = self.clock()
                if duration is not None and now - start >= duration:
                    break
                try:
                    if deploy_at is not None and now >= deploy_at:
                        deploy_at = None  # once, even if it fails
                        self.deploy()
                    if not self.storm_mode and self.storm_every > 0 and now >= next_storm:
                        self.storm()
                        next_storm = now + self.storm_every
                    self.step()
                except Exception:  # a demo must outlive a bug in what it demonstrates
                    self.counts["workload_failures"] += 1
                stop_event.wait(self.rng.uniform(0.5, 1.5) / self.rate)
        finally:
            jobs_stop.set()
            if worker is not None:
                worker.join(timeout=5.0)  # a task's sleep ends at the stop
            self.close()

    def step(self) -> str:
        """One tick of the app; returns the name of the failure scenario it played."""
        if self.storm_mode:
            self._buffer_op(self.rng, True)
            self.counts["memory_storm"] += 1
            return "memory_storm"
        if self._session is None and self.rng.random() < CRASH_SHARE:
            self._crash()
            self.counts["crash"] += 1
            return "crash"
        session = self._session_tick()
        for _ in range(self.rng.randrange(1, 4)):  # healthy operations, timed as ok
            op = self.rng.choice(self._operations)
            self._ops[self._key(op)](self.rng, False)
        scenario = self.rng.choices(
            ["operation", "ecu_flash", "can_read", "log_write", "memory"],
            weights=[55, 14, 12, 9, 4],
        )[0]
        if scenario == "operation":
            ops = self._operations
            op = self.rng.choices(ops, weights=[o.failure_weight for o in ops])[0]
            self.monitor.add_breadcrumb(
                f"start {op.name}",
                component=op.component,
                data={"plugin": op.plugin},
                category="operation",
            )
            self._ops[self._key(op)](self.rng, True)
        elif scenario == "ecu_flash":
            self._ecu_flash(session)
        elif scenario == "can_read":
            self._can_read(session)
        elif scenario == "log_write":
            self._log_write()
        else:
            self._buffer_op(self.rng, True)
        if session.steps_left <= 0:
            self.monitor.end_session(session.session_id, status=session.fate)
            self.counts[f"session_{session.fate}"] += 1
            self._session = None
        self.counts[scenario] += 1
        return scenario

    def storm(self) -> str:
        """A burst of one error type, enough to trip the pattern detector to critical."""
        key = STORM_OPERATIONS[self._storm_turn % len(STORM_OPERATIONS)]
        self._storm_turn += 1
        log.warning("error storm starting: %s", key)
        for _ in range(self.storm_size):
            self._ops[key](self.rng, True)
        self.counts["storm"] += 1
        return key

    def deploy(self) -> Deploy:
        """The release of the next version, without a restart (``set_app_version``).

        Before it, the ECU map-range ValueError (seen by now, or raised once here) is
        resolved as "fixed in the next version"; after it, launch control, the new feature,
        fails once (a group new in that version) and the ValueError comes back (the group
        regresses). From then on launch control is part of the traffic.
        """
        monitor = self.monitor
        from_version = monitor.config.app_version
        to_version = self.next_version or next_version(from_version)
        if self._flash_error_id is None:
            self._ecu_flash(self._session_tick())
        resolved = self._flash_error_id
        if resolved is not None:
            monitor.resolve_group(resolved)  # settles the queue first: the group exists
        if self.jobs is not None:  # every job error group exists before: none is new in it
            self.jobs.prime_failures()
        monitor.set_app_version(to_version)
        log.warning(
            "deploying version %s (was %s): launch control is new, the ECU map fix is in",
            to_version,
            from_version,
        )
        self._operations = (*OPERATIONS, LAUNCH_CONTROL)
        self._ops[self._key(LAUNCH_CONTROL)](self.rng, True)
        self._ecu_flash(self._session_tick())
        self.deployed = Deploy(from_version, to_version, resolved, LaunchControlError.__name__)
        self.counts["deploy"] += 1
        return self.deployed

    def close(self) -> None:
        """Ends the open session, as an app does when it shuts down."""
        if self._session is not None:
            self.monitor.end_session(self._session.session_id, status="exited")
            self._session = None

    # -- sessions ----------------------------------------------------------------------

    def _session_tick(self) -> _Session:
        """The current user's session, started when there is none.

        One session at a time, like the desktop tuner app: the monitor's current session
        then carries the breadcrumbs and errors of every operation of this tick.
        """
        session = self._session
        if session is None:
            user = self.rng.choice(USERS)
            session_id = self.monitor.start_session(user_id=user)
            fate = "errored" if self.rng.random() < 0.3 else "exited"
            session = _Session(session_id, user, self.rng.randrange(10, 40), fate)
            self.monitor.add_breadcrumb(
                "login", component="MainWindow", data={"user": user}, category="auth"
            )
        session.steps_left -= 1
        self._session = session
        return session

    def _crash(self) -> None:
        """A short session that dies of an unhandled exception (status crashed)."""
        user = self.rng.choice(USERS)
        try:
            with self.monitor.session(user_id=user):
                self.monitor.add_breadcrumb(
                    "open replay",
                    component="DataLogger",
                    data={"file": "run-42.csv"},
                    category="ui",
                )
                render_dashboard(self.rng, False)
                self._replay_log(user)
        except RuntimeError:
            self.counts["session_crashed"] += 1

    def _replay_log(self, user: str) -> None:
        raise RuntimeError(f"replay decoder crashed for {user}: unexpected end of stream")

    # -- scenarios with breadcrumbs, context and recovery -------------------------------

    def _ecu_flash(self, session: _Session) -> None:
        ecu = self.rng.choice(["Holley", "Haltech", "MegaSquirt"])
        self.monitor.add_breadcrumb(
            "load_ecu_config",
            component="ECUControl",
            data={"config_file": "tune.json", "ecu_type": ecu},
        )
        self.monitor.add_breadcrumb(
            "flash_map", component="ECUControl", data={"ecu_type": ecu}, level="warning"
        )
        try:
            flash_ecu_map(self.rng, True)
        except ValueError as exc:
            error_id = self.monitor.record_error(
                exc,
                component="ECUControl",
                operation="flash_map",
                context={"ecu_type": ecu, "map": "fuel"},
                metadata={"firmware": "2.4.1"},
                user_id=session.user_id,
                session_id=session.session_id,
            )
            self._flash_error_id = error_id or self._flash_error_id
            self._retry_with_recovery("ECUControl", "", error_id, success_rate=0.7)

    def _can_read(self, session: _Session) -> None:
        self.monitor.add_breadcrumb(
            "poll_can", component="CANInterface", data={"bus": "can0", "bitrate": 500000}
        )
        if self.rng.random() < 0.3:
            log.warning(
                "CAN bus load at %d%%",
                self.rng.randrange(80, 99),
                extra={"component": "CANInterface"},
            )
        try:
            read_can_frame(self.rng, True)
        except CANBusError as exc:
            error_id = self.monitor.record_error(
                exc,
                component="CANInterface",
                operation="read_frame",
                context={"bus": "can0"},
                user_id=session.user_id,
                session_id=session.session_id,
            )
            started = time.perf_counter()
            success = self.rng.random() < 0.6  # a bus reset helps more often than not
            self.monitor.record_recovery(
                success,
                duration_seconds=time.perf_counter() - started + self.rng.uniform(0.01, 0.3),
                component="CANInterface",
                error_id=error_id,
            )

    def _log_write(self) -> None:
        """An error that reaches the monitor only through logging."""
        try:
            write_log_chunk(self.rng, True)
        except OSError:
            log.exception("could not write the session log", extra={"component": "DataLogger"})

    def _retry_with_recovery(
        self, component: str, plugin: str, error_id: str | None, success_rate: float
    ) -> None:
        try:
            with self.monitor.recovery(component=component, plugin=plugin, error_id=error_id):
                if self.rng.random() >= success_rate:
                    raise RuntimeError("retry failed: ECU did not acknowledge")
        except RuntimeError:
            pass
