"""The service registry and the process manager behind ``start.sh`` / ``stop.sh``.

One typed entry per service (compose name, module, port, health path, dependencies) is the single
list that the local scripts, the compose files' static test and the dashboard agree on. A service
takes part only once its module can be run (``python -m <module>`` needs ``<module>.__main__``),
so a later issue enables a service by adding that file, not by editing this one.

``python -m stages.common.fleet start|stop|status|probe [SERVICE...]``:

- every file it writes lives under ``RUN_DIR`` (``<service>.pid``, ``logs/<service>.log``, and
  the previous run's log as ``logs/<service>.log.1``);
- ``start`` brings services up dependencies first, waits (bounded) until each answers its health
  check, and changes nothing for services already up;
- ``stop`` signals exactly the recorded processes, after checking that each pid still runs our
  module (a recycled pid belongs to someone else and is never signalled); a process of ours
  that no pid file names (a start interrupted before writing it) is found by module and
  RUN_DIR, recorded and handled like the others;
- ``probe`` exits 0 when a service's health check answers 200 (the compose health checks use it).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import importlib.util
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from stages.common.config import Settings

EMULATOR = "emulator"
# Local defaults the embedded emulator accepts; LocalStack documents the same pair.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}

# How long `start` waits for health and `stop` waits before SIGKILL, unless told otherwise.
DEFAULT_START_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 40.0
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Service:
    """One runnable service of the pipeline, named as in the compose files."""

    name: str
    module: str
    port_setting: str
    default_port: int
    title: str
    health_path: str = "/health"
    depends_on: tuple[str, ...] = ()
    # Talks to Kinesis/S3/DynamoDB, so the resources must exist before it starts.
    uses_aws: bool = False

    @property
    def port_env(self) -> str:
        """The environment variable that moves this service to another port."""
        return self.port_setting.upper()

    @property
    def host_setting(self) -> str:
        return self.port_setting.removesuffix("_port") + "_host"

    def port(self, settings: Settings) -> int:
        # Services added by later issues get their ``<name>_port`` setting with them; until then
        # the registry's default is the port.
        return int(getattr(settings, self.port_setting, self.default_port))

    def bind_host(self, settings: Settings) -> str:
        return str(getattr(settings, self.host_setting, "127.0.0.1"))

    def url(self, settings: Settings) -> str:
        return f"http://{_client_host(self.bind_host(settings))}:{self.port(settings)}"

    def health_url(self, settings: Settings) -> str:
        return self.url(settings) + self.health_path

    def available(self) -> bool:
        """True once ``python -m <module>`` can run, i.e. the service has been built."""
        try:
            return importlib.util.find_spec(f"{self.module}.__main__") is not None
        except ModuleNotFoundError:
            return False


SERVICES: tuple[Service, ...] = (
    Service(
        EMULATOR,
        "stages.emulator",
        "emulator_port",
        4566,
        "AWS emulator (Kinesis, S3, DynamoDB)",
        health_path="/_localstack/health",
    ),
    Service(
        "kinesis-consumer",
        "stages.consumer",
        "consumer_port",
        8011,
        "Kinesis consumer",
        depends_on=(EMULATOR,),
        uses_aws=True,
    ),
    Service("state-manager", "stages.state", "state_port", 8003, "State Manager"),
    Service("pattern-generator", "stages.patterns", "patterns_port", 8001, "Pattern Generator"),
    Service(
        "log-consolidation", "stages.consolidation", "consolidation_port", 8005, "Log Consolidation"
    ),
    Service(
        "ingestion-interface",
        "stages.ingestion",
        "ingestion_port",
        8004,
        "Ingestion Interface",
        depends_on=(EMULATOR, "log-consolidation"),
        uses_aws=True,
    ),
    Service(
        "log-synthesis",
        "stages.synthesis",
        "synthesis_port",
        8002,
        "Log Synthesis",
        depends_on=("pattern-generator", "state-manager", "ingestion-interface"),
    ),
    Service(
        "scenario-orchestrator",
        "stages.orchestrator",
        "orchestrator_port",
        8000,
        "Scenario Orchestrator (control panel)",
        depends_on=("pattern-generator", "state-manager", "log-synthesis"),
    ),
    Service(
        "dashboard",
        "stages.dashboard",
        "dashboard_port",
        8010,
        "Dashboard",
        depends_on=(EMULATOR, "kinesis-consumer"),
        uses_aws=True,
    ),
    Service(
        "detection",
        "stages.detection",
        "detection_port",
        8040,
        "Detection engine (anomaly events, alerts)",
        depends_on=(EMULATOR,),
        uses_aws=True,
    ),
)
BY_NAME: dict[str, Service] = {svc.name: svc for svc in SERVICES}
# Names people also use: the compose files call the emulator `localstack`.
ALIASES = {"localstack": EMULATOR, "consumer": "kinesis-consumer"}


class FleetError(Exception):
    """A request the fleet cannot carry out; the message is for the user."""

    exit_code = 1


class UsageError(FleetError):
    """An unknown or not yet built service was named."""

    exit_code = 2


def _client_host(host: str) -> str:
    # A wildcard bind address is not an address to connect to.
    return "127.0.0.1" if host in {"", "0.0.0.0", "::"} else host


def _say(message: str) -> None:
    print(message, flush=True)


def resolve(names: Iterable[str]) -> list[Service]:
    services = []
    for raw in names:
        name = ALIASES.get(raw, raw)
        if name not in BY_NAME:
            raise UsageError(f"unknown service {raw!r}; known: {', '.join(BY_NAME)}")
        services.append(BY_NAME[name])
    return services


def levels(services: Iterable[Service]) -> list[list[Service]]:
    """Group services so that each group depends only on earlier groups (registry order kept)."""
    chosen = {svc.name: svc for svc in services}
    placed: dict[str, int] = {}

    def depth(svc: Service, trail: tuple[str, ...] = ()) -> int:
        if svc.name in trail:
            raise FleetError(f"dependency cycle: {' -> '.join((*trail, svc.name))}")
        if svc.name not in placed:
            deps = [BY_NAME[d] for d in svc.depends_on if d in chosen]
            placed[svc.name] = 1 + max((depth(d, (*trail, svc.name)) for d in deps), default=-1)
        return placed[svc.name]

    grouped: dict[int, list[Service]] = {}
    for svc in SERVICES:
        if svc.name in chosen:
            grouped.setdefault(depth(svc), []).append(svc)
    return [grouped[k] for k in sorted(grouped)]


@dataclass
class Probe:
    healthy: bool
    detail: str


def probe(url: str, timeout: float = 2.0) -> Probe:
    try:
        resp = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return Probe(False, type(exc).__name__)
    if resp.status_code == 200:
        return Probe(True, "healthy")
    return Probe(False, f"HTTP {resp.status_code}")


def port_holder(port: int) -> str:
    """Who listens on ``port``, for the error message (best effort: needs /proc access)."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    return "another process"
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline())[:120]})"
    except (psutil.Error, OSError):
        pass
    return "another process"


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Same options as the servers we start, so TIME_WAIT leftovers do not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            # Anything else (an address this host does not have, ...) is the service's own
            # start-up error to report, with its log.
            return exc.errno == errno.EADDRINUSE
    return False


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _listens_on(proc: psutil.Process, port: int) -> bool:
    try:
        return any(
            conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
            for conn in proc.net_connections(kind="tcp")
        )
    except psutil.Error:
        return False


def _alive(proc: psutil.Process) -> bool:
    # An exited child of a dead parent can stay a zombie until init reaps it; it is gone for us.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Fleet:
    """Starts, stops and reports the services whose files live under one run directory."""

    def __init__(self, settings: Settings, environ: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.run_dir = settings.run_dir.resolve()
        self.log_dir = self.run_dir / "logs"
        # Real AWS or LocalStack when AWS_ENDPOINT_URL is set or EMBEDDED_EMULATOR=0.
        self.embedded = settings.aws_endpoint_url is None and settings.embedded_emulator

    # --- files --------------------------------------------------------------------------------
    def pid_file(self, svc: Service) -> Path:
        return self.run_dir / f"{svc.name}.pid"

    def log_file(self, svc: Service) -> Path:
        return self.log_dir / f"{svc.name}.log"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One start/stop at a time per run directory, so two terminals cannot double-start."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "fleet.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def running(self, svc: Service) -> psutil.Process | None:
        """The recorded process if it is still ours, else an unrecorded one of ours (adopted:
        its pid file is written); a stale pid file is removed."""
        path = self.pid_file(svc)
        try:
            pid = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            path.unlink(missing_ok=True)
            return self._adopt(svc)
        proc = self._owned(pid, svc)
        if proc is None:
            path.unlink(missing_ok=True)
            return self._adopt(svc)
        return proc

    def _adopt(self, svc: Service) -> psutil.Process | None:
        """A process of ours that no pid file names, recorded from now on.

        A start interrupted between spawning a service and writing its pid file leaves one
        behind; so does a service started by hand the way the fleet starts it. It is found the
        way a pid is checked (``_owned``: our module, our RUN_DIR); among several, the one
        listening on the service's port.
        """
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if any(a == "-m" and b == svc.module for a, b in itertools.pairwise(cmdline)):
                owned = self._owned(proc.pid, svc)
                if owned is not None:
                    found.append(owned)
        if not found:
            return None
        port = svc.port(self.settings)
        found.sort(key=lambda proc: not _listens_on(proc, port))
        adopted = found[0]
        self._record(svc, adopted.pid)
        _say(f"{svc.name}: found running without a pid file (pid {adopted.pid}); recorded it")
        return adopted

    def _record(self, svc: Service, pid: int) -> None:
        tmp = self.pid_file(svc).with_suffix(".pid.tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.pid_file(svc))

    def _owned(self, pid: int, svc: Service) -> psutil.Process | None:
        """The process if it runs ``svc``'s module for this run directory (a pid reused by
        anything else, or by the same service of another run directory, is not ours).

        Not by start times: psutil derives them from the wall clock, and a VM whose clock was
        stepped by 9 s made live services look younger than their pid files, so they were taken
        for recycled pids, left running, and their ports blocked the next start.
        """
        try:
            proc = psutil.Process(pid)
            cmdline = proc.cmdline()
            run_dir = proc.environ().get("RUN_DIR")
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return None
        if not _alive(proc):
            return None
        # Our command line is `<python> -m <module>`, and every child gets RUN_DIR (child_env).
        runs_module = any(a == "-m" and b == svc.module for a, b in itertools.pairwise(cmdline))
        if not runs_module or run_dir != str(self.run_dir):
            return None
        return proc

    # --- environment --------------------------------------------------------------------------
    def aws_endpoint(self) -> str | None:
        if self.embedded:
            return BY_NAME[EMULATOR].url(self.settings)
        return self.settings.aws_endpoint_url

    def child_env(self) -> dict[str, str]:
        env = dict(self.environ)
        env["RUN_DIR"] = str(self.run_dir)
        env["PYTHONUNBUFFERED"] = "1"
        if self.embedded:
            env["AWS_ENDPOINT_URL"] = BY_NAME[EMULATOR].url(self.settings)
            for key, value in LOCAL_CREDENTIALS.items():
                env.setdefault(key, value)
            env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        return env

    # --- selection ----------------------------------------------------------------------------
    def targets(self, names: Sequence[str]) -> list[Service]:
        """The named services (all built ones if none) plus their dependencies."""
        if names:
            wanted = resolve(names)
            missing = [svc.name for svc in wanted if not svc.available()]
            if missing:
                raise UsageError(
                    f"not built yet: {', '.join(missing)} "
                    f"(no python module {', '.join(BY_NAME[m].module for m in missing)})"
                )
        else:
            wanted = [svc for svc in SERVICES if svc.available()]
            unbuilt = [svc.name for svc in SERVICES if not svc.available()]
            if unbuilt:
                _say(f"not built yet, so not started: {', '.join(unbuilt)}")
        chosen: dict[str, Service] = {}
        stack = list(wanted)
        while stack:
            svc = stack.pop()
            if svc.name in chosen:
                continue
            chosen[svc.name] = svc
            for dep in svc.depends_on:
                if not BY_NAME[dep].available():
                    raise UsageError(f"{svc.name} needs {dep}, which is not built yet")
                stack.append(BY_NAME[dep])
        if not self.embedded and EMULATOR in chosen:
            del chosen[EMULATOR]
            if any(svc.name == EMULATOR for svc in wanted):
                _say(f"emulator: not started, using {self.aws_endpoint() or 'real AWS'}")
        return [svc for svc in SERVICES if svc.name in chosen]

    # --- start --------------------------------------------------------------------------------
    def start(self, names: Sequence[str], timeout: float = DEFAULT_START_TIMEOUT) -> int:
        targets = self.targets(names)
        if not targets:
            _say("nothing to start")
            return 0
        with self.locked():
            started: list[Service] = []
            provisioned = self.embedded
            for group in levels(targets):
                to_spawn = []
                for svc in group:
                    proc = self.running(svc)
                    if proc is not None:
                        _say(f"{svc.name}: already running (pid {proc.pid})")
                    else:
                        to_spawn.append(svc)
                if not provisioned and any(svc.uses_aws for svc in to_spawn):
                    self.provision(timeout)
                    provisioned = True
                spawned: dict[str, subprocess.Popen[bytes]] = {}
                blocked: dict[str, str] = {}
                for svc in to_spawn:
                    blocker = self.port_conflict(svc)
                    if blocker:
                        blocked[svc.name] = blocker
                    else:
                        spawned[svc.name] = self.spawn(svc)
                        started.append(svc)
                waited = [svc for svc in group if svc.name not in blocked]
                failures = blocked | self.wait_healthy(waited, spawned, timeout)
                if failures:
                    for name, why in failures.items():
                        # A blocked service never ran: its log is an older run's.
                        self.report_failure(
                            BY_NAME[name], spawned.get(name), why, show_log=name not in blocked
                        )
                    left = [s.name for s in started if s.name not in failures]
                    if left:
                        _say(f"left running: {', '.join(left)} (./stop.sh stops them)")
                    return 1
            if not started:
                _say("everything requested is already running; nothing changed")
            self.print_urls(targets)
            return 0

    def provision(self, timeout: float) -> None:
        """Create streams, buckets and lease table on an external endpoint (idempotent)."""
        log = self.log_dir / "provision.log"
        _say(f"provisioning AWS resources on {self.aws_endpoint() or 'real AWS'} ...")
        with open(log, "wb") as out:
            try:
                result = subprocess.run(
                    [sys.executable, "-m", "stages.common.provision"],
                    env=self.child_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=max(timeout, 30.0),
                    check=False,
                )
                code: int | str = result.returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        if code != 0:
            raise FleetError(f"provisioning failed ({code}); {log}:\n{tail(log)}")

    def port_conflict(self, svc: Service) -> str | None:
        """Why ``svc`` cannot bind its port, checked before spawning it.

        A child that fails to bind would exit, but until it does the health check could be
        answered by whoever holds the port, so a foreign server would pass for ours.
        """
        host, port = svc.bind_host(self.settings), svc.port(self.settings)
        if not port_in_use(host, port):
            return None
        return (
            f"{host}:{port} is already in use by {port_holder(port)}; "
            f"stop that process or set {svc.port_env} to another port"
        )

    def spawn(self, svc: Service) -> subprocess.Popen[bytes]:
        log = self.log_file(svc)
        # The last run's log (often a crash to read) is kept as <service>.log.1.
        if log.exists() and log.stat().st_size > 0:
            log.replace(log.with_name(log.name + ".1"))
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", svc.module],
                env=self.child_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own session: Ctrl-C in the terminal that ran start.sh must not reach services.
                start_new_session=True,
            )
        self._record(svc, popen.pid)
        _say(f"{svc.name}: started (pid {popen.pid}, port {svc.port(self.settings)}, log {log})")
        return popen

    def wait_healthy(
        self,
        group: list[Service],
        spawned: dict[str, subprocess.Popen[bytes]],
        timeout: float,
    ) -> dict[str, str]:
        """Wait until every service of ``group`` is healthy; return why the others are not."""
        began = time.monotonic()
        pending = {svc.name: svc for svc in group}
        failures: dict[str, str] = {}
        next_note = began + 5.0
        while pending:
            for name, svc in list(pending.items()):
                popen = spawned.get(name)
                if popen is not None and popen.poll() is not None:
                    failures[name] = f"exited with code {popen.returncode}"
                elif popen is None and self.running(svc) is None:
                    failures[name] = "is no longer running"
                elif probe(svc.health_url(self.settings), timeout=1.0).healthy:
                    if popen is not None:
                        _say(f"{name}: healthy after {time.monotonic() - began:.1f}s")
                else:
                    continue
                pending.pop(name)
            now = time.monotonic()
            if pending and now - began > timeout:
                for name, svc in pending.items():
                    failures[name] = (
                        f"not healthy at {svc.health_url(self.settings)} after {timeout:.0f}s"
                    )
                break
            if pending and now >= next_note:
                waiting = ", ".join(
                    f"{s.name} ({probe(s.health_url(self.settings), 1.0).detail})"
                    for s in pending.values()
                )
                _say(f"  ... {now - began:.0f}s, waiting for {waiting}")
                next_note = now + 5.0
            if pending:
                time.sleep(0.1)
        return failures

    def report_failure(
        self, svc: Service, popen: subprocess.Popen[bytes] | None, why: str, *, show_log: bool
    ) -> None:
        if popen is not None:
            if popen.poll() is None:
                # Half-started services are stopped, so a retry starts from a clean state.
                self._terminate([(svc, psutil.Process(popen.pid))], DEFAULT_STOP_TIMEOUT)
            self.pid_file(svc).unlink(missing_ok=True)
        _say(f"\n{svc.name}: FAILED to start: {why}")
        if show_log:
            _say(f"--- last lines of {self.log_file(svc)} ---\n{tail(self.log_file(svc))}\n---")

    def print_urls(self, services: Iterable[Service]) -> None:
        _say("")
        for svc in services:
            _say(f"  {svc.name:<22} {svc.url(self.settings):<24} {svc.title}")
        if not self.embedded:
            _say(f"  {'AWS endpoint':<22} {self.aws_endpoint() or 'real AWS'}")
        _say(f"\n  logs: {self.log_dir}/<service>.log    pids: {self.run_dir}/<service>.pid")
        _say("  status: ./start.sh status    stop: ./stop.sh [SERVICE...]")

    # --- stop ---------------------------------------------------------------------------------
    def stop(self, names: Sequence[str], timeout: float = DEFAULT_STOP_TIMEOUT) -> int:
        targets = resolve(names) if names else list(SERVICES)
        with self.locked():
            # Dependents first: the consumer's last flush on SIGTERM still needs the emulator.
            for group in reversed(levels(targets)):
                batch = []
                for svc in group:
                    proc = self.running(svc)
                    if proc is None:
                        if names:
                            _say(f"{svc.name}: not running")
                        continue
                    _say(f"{svc.name}: stopping (pid {proc.pid})")
                    batch.append((svc, proc))
                self._terminate(batch, timeout)
        return 0

    def _terminate(self, batch: list[tuple[Service, psutil.Process]], timeout: float) -> None:
        for _, proc in batch:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(_alive(p) for _, p in batch) and time.monotonic() < deadline:
            time.sleep(0.1)
        for svc, proc in batch:
            if _alive(proc):
                _say(f"{svc.name}: still running after {timeout:.0f}s, sending SIGKILL")
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
                with contextlib.suppress(psutil.Error):
                    proc.wait(5)
            self.pid_file(svc).unlink(missing_ok=True)
            _say(f"{svc.name}: stopped")

    # --- status -------------------------------------------------------------------------------
    def status(self, names: Sequence[str]) -> int:
        services = resolve(names) if names else list(SERVICES)
        rows = [("SERVICE", "PID", "PORT", "STATE", "URL")]
        all_up = True
        for svc in services:
            url = svc.url(self.settings)
            port = str(svc.port(self.settings))
            if svc.name == EMULATOR and not self.embedded:
                endpoint = self.aws_endpoint() or "real AWS"
                rows.append((svc.name, "-", "-", "external", endpoint))
                continue
            if not svc.available():
                rows.append((svc.name, "-", port, "not built", "-"))
                continue
            proc = self.running(svc)
            if proc is None:
                state, pid = "stopped", "-"
                all_up = False
            else:
                result = probe(svc.health_url(self.settings))
                state = "healthy" if result.healthy else f"unhealthy ({result.detail})"
                pid = str(proc.pid)
                all_up = all_up and result.healthy
            rows.append((svc.name, pid, port, state, url))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            _say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        # Exit 3 like an init script's status: "not (all) running".
        return 0 if all_up else 3


def main(argv: Sequence[str] | None = None, prog: str = "python -m stages.common.fleet") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Start, stop and inspect the pipeline's local services.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("start", "start services (default: every built one) and wait until healthy"),
        ("stop", "stop services started from this RUN_DIR (default: all)"),
        ("status", "table of services: pid, port, health"),
        ("probe", "exit 0 if the service's health check answers 200"),
        ("list", "the registry: name, module, port, dependencies, built or not"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        if name == "probe":
            cmd.add_argument("service")
        elif name != "list":
            cmd.add_argument("services", nargs="*", metavar="SERVICE")
        if name in {"start", "stop"}:
            default = DEFAULT_START_TIMEOUT if name == "start" else DEFAULT_STOP_TIMEOUT
            cmd.add_argument("--timeout", type=float, default=default, help="seconds")
    args = parser.parse_args(argv)

    settings = Settings()
    fleet = Fleet(settings)
    try:
        if args.command == "start":
            return fleet.start(args.services, args.timeout)
        if args.command == "stop":
            return fleet.stop(args.services, args.timeout)
        if args.command == "status":
            return fleet.status(args.services)
        if args.command == "probe":
            (svc,) = resolve([args.service])
            return 0 if probe(svc.health_url(settings)).healthy else 1
        for svc in SERVICES:
            built = "built" if svc.available() else "not built"
            deps = ",".join(svc.depends_on) or "-"
            _say(f"{svc.name:<22} {svc.module:<22} {svc.port(settings):<6} {deps:<45} {built}")
        return 0
    except FleetError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("\ninterrupted; services already started keep running (./stop.sh stops them)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
