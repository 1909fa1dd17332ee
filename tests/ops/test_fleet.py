"""The fleet CLI and start.sh / stop.sh, run as a user runs them (real processes, real ports)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil

from stages.common import aws, resources
from stages.common.config import Settings
from stages.ops import fleet, registry
from tests.ops.support import FleetRun, alive
from tests.support.processes import start_emulator

STAGE01 = ("emulator", "kinesis-consumer")


def test_registry_is_consistent() -> None:
    names = [svc.name for svc in registry.SERVICES]
    assert names[:2] == list(STAGE01)
    assert len(set(names)) == len(names)
    assert len({svc.default_port for svc in registry.SERVICES}) == len(names)
    for svc in registry.SERVICES:
        assert set(svc.depends_on) <= set(names), svc.name
        assert svc.module.startswith("stages."), svc.name
    # Ports of SPEC §2.
    ports = {svc.name: svc.default_port for svc in registry.SERVICES}
    assert ports["scenario-orchestrator"] == 8000
    assert ports["ingestion-interface"] == 8004
    assert ports["dashboard"] == 8010
    assert ports["emulator"] == 4566
    # Ports come from the one settings module; env moves them.
    settings = Settings(emulator_port=1234, consumer_port=2345)
    assert registry.BY_NAME["emulator"].port(settings) == 1234
    assert registry.BY_NAME["kinesis-consumer"].port(settings) == 2345
    assert registry.BY_NAME["kinesis-consumer"].port_env == "CONSUMER_PORT"


def test_levels_put_dependencies_first() -> None:
    order = [svc.name for group in fleet.levels(registry.SERVICES) for svc in group]
    for svc in registry.SERVICES:
        for dep in svc.depends_on:
            assert order.index(dep) < order.index(svc.name), (dep, svc.name)
    # Services of one level do not depend on each other, so they start together.
    for group in fleet.levels(registry.SERVICES):
        names = {svc.name for svc in group}
        assert not any(set(svc.depends_on) & names for svc in group)


def test_stage01_services_are_built() -> None:
    for name in STAGE01:
        assert registry.BY_NAME[name].available(), name


def test_start_status_restart_stop(fleet_run: FleetRun) -> None:
    began = time.monotonic()
    result = fleet_run.script("start.sh", *STAGE01)
    took = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"start.sh {' '.join(STAGE01)}: healthy after {took:.1f}s")
    # It says where the logs are and how to go on.
    assert f"logs: {fleet_run.run_dir}/logs/<service>.log" in result.stdout
    assert "status: ./start.sh status" in result.stdout

    pids = {name: fleet_run.pid(name) for name in STAGE01}
    emulator_url = f"http://127.0.0.1:{fleet_run.emulator_port}"
    for name, pid in pids.items():
        proc = psutil.Process(pid)
        assert alive(pid)
        assert proc.cmdline()[1:3] == ["-m", registry.BY_NAME[name].module]
        log = fleet_run.run_dir / "logs" / f"{name}.log"
        assert log.stat().st_size > 0, name
    assert httpx.get(f"{emulator_url}/_localstack/health").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{fleet_run.consumer_port}/health").status_code == 200

    # The consumer was pointed at the embedded emulator with the local credentials.
    child_env = psutil.Process(pids["kinesis-consumer"]).environ()
    assert child_env["AWS_ENDPOINT_URL"] == emulator_url
    assert child_env["AWS_ACCESS_KEY_ID"] == "test"
    assert child_env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert child_env["RUN_DIR"] == str(fleet_run.run_dir)
    # ... and the emulator created the catalogue before it reported healthy.
    settings = Settings(aws_endpoint_url=emulator_url)
    streams = aws.client("kinesis", settings).list_streams()["StreamNames"]
    assert sorted(streams) == sorted(spec.name for spec in resources.streams(settings))

    status = fleet_run.script("start.sh", "status", *STAGE01)
    assert status.returncode == 0, status.stdout
    for name, pid in pids.items():
        line = next(ln for ln in status.stdout.splitlines() if ln.startswith(name + " "))
        assert str(pid) in line and "healthy" in line, line

    again = fleet_run.script("start.sh", *STAGE01)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    assert "nothing changed" in again.stdout
    assert {name: fleet_run.pid(name) for name in STAGE01} == pids
    assert all(alive(pid) for pid in pids.values())

    stopped = fleet_run.script("stop.sh")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    # Dependents first: the consumer flushes through the emulator on its way out.
    out = stopped.stdout
    assert out.index("kinesis-consumer: stopping") < out.index("emulator: stopping")
    assert not any(alive(pid) for pid in pids.values())
    assert not list(fleet_run.run_dir.glob("*.pid"))

    after = fleet_run.cli("status", *STAGE01)
    assert after.returncode == 3
    assert all("stopped" in ln for ln in after.stdout.splitlines() if ln.startswith(STAGE01)), (
        after.stdout
    )


def test_naming_a_service_starts_its_dependencies(fleet_run: FleetRun) -> None:
    result = fleet_run.cli("start", "consumer")  # alias of kinesis-consumer
    assert result.returncode == 0, result.stdout
    assert alive(fleet_run.pid("emulator")) and alive(fleet_run.pid("kinesis-consumer"))
    # Stopping one service leaves the others alone.
    emulator_pid = fleet_run.pid("emulator")
    assert fleet_run.cli("stop", "kinesis-consumer").returncode == 0
    assert alive(emulator_pid)
    assert not (fleet_run.run_dir / "kinesis-consumer.pid").exists()


def test_stop_never_signals_a_pid_that_is_not_ours(fleet_run: FleetRun) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fleet_run.run_dir.mkdir(parents=True)
        (fleet_run.run_dir / "emulator.pid").write_text(f"{stranger.pid}\n")
        (fleet_run.run_dir / "kinesis-consumer.pid").write_text("not a pid\n")
        status = fleet_run.cli("status", "emulator")
        assert "stopped" in status.stdout
        result = fleet_run.cli("stop")
        assert result.returncode == 0, result.stdout
        assert stranger.poll() is None, "a process that is not ours was signalled"
        assert not list(fleet_run.run_dir.glob("*.pid")), "stale pid files are removed"
    finally:
        stranger.kill()
        stranger.wait()


def test_port_already_taken_is_reported(fleet_run: FleetRun) -> None:
    (fleet_run.run_dir / "logs").mkdir(parents=True)
    (fleet_run.run_dir / "logs" / "emulator.log").write_text("an earlier run's log\n")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", fleet_run.emulator_port))
        squatter.listen()
        result = fleet_run.cli("start", "emulator")
    assert result.returncode == 1
    assert f"127.0.0.1:{fleet_run.emulator_port} is already in use" in result.stdout
    assert "EMULATOR_PORT" in result.stdout
    assert "an earlier run's log" not in result.stdout  # nothing ran, so no log is shown
    assert not (fleet_run.run_dir / "emulator.pid").exists()


def test_crashing_service_is_reported_with_its_log_tail(fleet_run: FleetRun) -> None:
    # An invalid log level makes the emulator exit at start-up with a traceback.
    result = fleet_run.cli("start", "emulator", LOG_LEVEL="NO-SUCH-LEVEL")
    assert result.returncode == 1
    assert "emulator: FAILED to start: exited with code" in result.stdout
    assert "last lines of" in result.stdout
    assert "NO-SUCH-LEVEL" in result.stdout  # from the log tail
    assert not (fleet_run.run_dir / "emulator.pid").exists()


def test_health_timeout_stops_the_half_started_service(fleet_run: FleetRun) -> None:
    result = fleet_run.cli("start", "emulator", "--timeout", "0.05")
    assert result.returncode == 1
    assert "not healthy at" in result.stdout
    assert not (fleet_run.run_dir / "emulator.pid").exists()
    pid = int(result.stdout.split("(pid ")[1].split(",")[0])
    assert not alive(pid)


def test_unknown_service_is_a_usage_error(fleet_run: FleetRun) -> None:
    result = fleet_run.cli("start", "no-such-service")
    assert result.returncode == 2
    assert "unknown service 'no-such-service'" in result.stdout
    assert "kinesis-consumer" in result.stdout


def test_external_endpoint_starts_no_emulator_and_provisions(fleet_run: FleetRun, tmp_path) -> None:
    logs = tmp_path / "external"
    logs.mkdir()
    external, endpoint = start_emulator(logs, provision=False)
    try:
        # The consumer is the service that needs the resources; its dependency, the emulator,
        # is replaced by the external endpoint.
        result = fleet_run.cli("start", "kinesis-consumer", AWS_ENDPOINT_URL=endpoint)
        assert result.returncode == 0, result.stdout
        assert not (fleet_run.run_dir / "emulator.pid").exists()
        assert "provisioning AWS resources" in result.stdout
        consumer = psutil.Process(fleet_run.pid("kinesis-consumer"))
        assert consumer.environ()["AWS_ENDPOINT_URL"] == endpoint
        settings = Settings(aws_endpoint_url=endpoint)
        names = {b["Name"] for b in aws.client("s3", settings).list_buckets()["Buckets"]}
        assert names == set(resources.buckets(settings))
        status = fleet_run.cli("status", "emulator", AWS_ENDPOINT_URL=endpoint)
        assert "external" in status.stdout and endpoint in status.stdout
        assert fleet_run.cli("stop", AWS_ENDPOINT_URL=endpoint).returncode == 0
        assert external.alive(), "stop must not touch an emulator it did not start"
    finally:
        external.stop()


def test_probe_reports_health(fleet_run: FleetRun) -> None:
    assert fleet_run.cli("probe", "emulator").returncode == 1
    assert fleet_run.cli("start", "emulator").returncode == 0
    assert fleet_run.cli("probe", "localstack").returncode == 0


# A process whose command line looks like the emulator's (`-m stages.emulator` in its argv) but
# that ignores SIGTERM, as a wedged service would.
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', "
    "flush=True); time.sleep(60)",
    "-m",
    "stages.emulator",
)


def _stubborn(env: dict[str, str]) -> subprocess.Popen[str]:
    """STUBBORN started, returned once its handler is installed (it says so), however long a
    loaded machine takes to start Python: a SIGTERM before that would simply end it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", *STUBBORN], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.stdout.close()  # it writes nothing more
    return proc


def _as_if_started_by(fleet_run: FleetRun) -> dict[str, str]:
    """The environment the fleet gives its children (it recognises them by RUN_DIR)."""
    return {**os.environ, "RUN_DIR": str(fleet_run.run_dir.resolve())}


def test_stop_escalates_to_sigkill(fleet_run: FleetRun) -> None:
    stubborn = _stubborn(_as_if_started_by(fleet_run))
    try:
        fleet_run.run_dir.mkdir(parents=True)
        (fleet_run.run_dir / "emulator.pid").write_text(f"{stubborn.pid}\n")
        result = fleet_run.cli("stop", "--timeout", "1")
        assert result.returncode == 0, result.stdout
        assert "emulator: still running after 1s, sending SIGKILL" in result.stdout
        assert stubborn.wait(5) == -signal.SIGKILL
        assert not (fleet_run.run_dir / "emulator.pid").exists()
    finally:
        stubborn.kill()
        stubborn.wait()


def test_a_recycled_pid_is_not_signalled(fleet_run: FleetRun) -> None:
    # Same command line, but another run directory's (or none): the pid was reused.
    other_run = {**os.environ, "RUN_DIR": str(fleet_run.run_dir.parent / "another-run")}
    lookalike = _stubborn(other_run)
    try:
        fleet_run.run_dir.mkdir(parents=True)
        pid_file = fleet_run.run_dir / "emulator.pid"
        pid_file.write_text(f"{lookalike.pid}\n")
        assert fleet_run.cli("stop", "--timeout", "1").returncode == 0
        assert lookalike.poll() is None
        assert not pid_file.exists()
    finally:
        lookalike.kill()
        lookalike.wait()


def test_a_service_is_still_ours_after_the_clock_moved(fleet_run: FleetRun) -> None:
    """A stepped wall clock once made live services look younger than their pid files; they
    were taken for recycled pids, their pid files removed and the processes left running."""
    ours = _stubborn(_as_if_started_by(fleet_run))
    try:
        fleet_run.run_dir.mkdir(parents=True)
        pid_file = fleet_run.run_dir / "emulator.pid"
        pid_file.write_text(f"{ours.pid}\n")
        an_hour_ago = time.time() - 3600
        os.utime(pid_file, (an_hour_ago, an_hour_ago))
        status = fleet_run.cli("status", "emulator")
        assert f"{ours.pid}" in status.stdout, status.stdout
        assert fleet_run.cli("stop", "--timeout", "1").returncode == 0
        assert ours.wait(5) == -signal.SIGKILL
    finally:
        ours.kill()
        ours.wait()


def test_a_restart_keeps_the_crashed_runs_log(fleet_run: FleetRun) -> None:
    log = fleet_run.run_dir / "logs" / "emulator.log"
    crashed = fleet_run.cli("start", "emulator", LOG_LEVEL="NO-SUCH-LEVEL")
    assert crashed.returncode == 1
    assert "NO-SUCH-LEVEL" in log.read_text()

    restarted = fleet_run.cli("start", "emulator")
    assert restarted.returncode == 0, restarted.stdout
    previous = log.with_name("emulator.log.1")
    assert "NO-SUCH-LEVEL" in previous.read_text(), "the crashed run's log was lost"
    assert "NO-SUCH-LEVEL" not in log.read_text()
    assert log.stat().st_size > 0


def test_a_service_without_a_pid_file_is_found_and_stopped(fleet_run: FleetRun) -> None:
    """What a start.sh killed between spawning a service and writing its pid file leaves: the
    service runs, started as the fleet starts it, with no pid file."""
    fleet_run.run_dir.mkdir(parents=True)
    service = subprocess.Popen(
        [sys.executable, "-m", registry.BY_NAME["pattern-generator"].module],
        env={**fleet_run.env, "RUN_DIR": str(fleet_run.run_dir.resolve())},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = fleet_run.url("pattern-generator")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        assert not (fleet_run.run_dir / "pattern-generator.pid").exists()

        status = fleet_run.cli("status", "pattern-generator")
        assert f"found running without a pid file (pid {service.pid})" in status.stdout
        row = next(ln.split() for ln in status.stdout.splitlines() if "http://" in ln)
        assert row[:2] == ["pattern-generator", str(service.pid)] and row[3] == "healthy", row
        assert fleet_run.pid("pattern-generator") == service.pid  # recorded from now on

        again = fleet_run.cli("start", "pattern-generator")
        assert again.returncode == 0, again.stdout
        assert f"already running (pid {service.pid}" in again.stdout

        stopped = fleet_run.cli("stop")
        assert stopped.returncode == 0, stopped.stdout
        assert f"pattern-generator: stopping (pid {service.pid})" in stopped.stdout
        assert service.wait(10) is not None
        assert not (fleet_run.run_dir / "pattern-generator.pid").exists()
    finally:
        service.kill()
        service.wait()
