import time
from pathlib import Path

import httpx

from tests.support.lake import ConsumerProcess
from tests.support.processes import START_TIMEOUT_SECONDS, free_port


def test_health_is_503_with_a_reason_when_aws_is_unreachable(proc_logs: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    consumer = ConsumerProcess(nowhere, proc_logs, CONSUMER_MAX_BACKOFF_SECONDS="0.2")
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                resp = httpx.get(f"{consumer.url}/health", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, consumer.log_tail()
                time.sleep(0.2)
        assert resp.status_code == 503
        body = resp.json()
        assert body["status"] == "unhealthy"
        assert body["owned_shards"] == []
        assert body["reason"]
        assert consumer.alive()  # it keeps trying instead of exiting
    finally:
        consumer.stop()
