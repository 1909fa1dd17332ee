"""A process that served an app from a thread and ran the memory-reclaim thread ends both before
the interpreter finalizes: threads still running then (an event loop, a collection, a
malloc_trim) can kill the process with SIGSEGV after a clean shutdown."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.processes import ROOT, free_port

SCRIPT = textwrap.dedent(
    """
    import atexit, threading, time
    import httpx

    # Registered first, so it runs last of the exit handlers: what is still running by then
    # is what the interpreter's finalization meets.
    atexit.register(
        lambda: print("at exit:", sorted(t.name for t in threading.enumerate() if t.is_alive()))
    )

    from stages.common.runtime import tune_process
    from stages.common.service import create_service_app, serve_in_thread

    tune_process(0.01)
    served = serve_in_thread(create_service_app("exit-test"), "127.0.0.1", {port})
    # Up to 30 s for the server thread to answer (5 s was short for a loaded machine).
    deadline = time.monotonic() + 30
    while True:
        try:
            print("health:", httpx.get("http://127.0.0.1:{port}/health").status_code)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    time.sleep(0.1)  # a few reclaim rounds
    served.stop()
    print("served thread alive after stop:", served.thread.is_alive())
    """
)


def test_the_http_and_reclaim_threads_end_before_the_interpreter_finalizes() -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(port=port)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "health: 200" in lines, done.stdout + done.stderr
    assert "served thread alive after stop: False" in lines
    # anyio's idle worker threads (the sync /health endpoint ran in one) wait on a queue and
    # run no code; the reclaim and the server threads are the ones that would.
    last = lines[-1]
    assert last.startswith("at exit: "), done.stdout
    assert "memory-reclaim" not in last and f"http-{port}" not in last, done.stdout
