"""The detection view's endpoints: features read from a real emulator with pyiceberg, the ground
truth from a small real orchestrator stand-in (uvicorn on a free port), the scoreboard from the
models bucket; the page and its assets. The page in a browser: tests/browser/test_detection_view.py.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from stages.common import aws
from stages.common.config import Settings
from stages.common.service import create_service_app
from stages.detection import view
from stages.detection.reader import Point
from stages.etl.features import ensure_features_table
from stages.etl.tables import open_catalog
from tests.detection.view_support import WIDTH, FakeOrchestrator, feature_rows, window
from tests.support.pages import PageAssets
from tests.support.processes import free_port, start_emulator

SERVICE = "payment-service"
QUIET = "auth-service"
SERIES = "cpu=metric:cpu.utilization:mean,latency=metric:latency.p95:max"
# One hour across midnight: the rows of two days' partitions.
START = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
BUCKETS = 360
SPIKE = 100  # the one bucket where cpu is 97
XSS = '<img src=x onerror="window.__xss=1">'


@dataclass
class Lake:
    settings: Settings
    orchestrator: FakeOrchestrator


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    logs = tmp_path_factory.mktemp("view-logs")
    emulator, endpoint = start_emulator(logs)
    windows = [
        window("in-range", SERVICE, START + timedelta(minutes=10), START + timedelta(minutes=15)),
        window("other-service", QUIET, START + timedelta(minutes=10), None),
        window("before", SERVICE, START - timedelta(hours=3), START - timedelta(hours=2)),
        window("still-open", SERVICE, START + timedelta(minutes=50), None, scenario_id=XSS),
    ]
    orchestrator = FakeOrchestrator(windows)
    try:
        settings = Settings(
            aws_endpoint_url=endpoint,
            detection_series=SERIES,
            orchestrator_port=orchestrator.port,
        )
        table = ensure_features_table(open_catalog(settings, name="writer"))
        table.append(feature_rows((SERVICE, QUIET), START, BUCKETS, spike=SPIKE))
        yield Lake(settings, orchestrator)
    finally:
        orchestrator.stop()
        emulator.stop()


def client_for(settings: Settings) -> TestClient:
    app = create_service_app("detection", routers=[view.router(settings)], status_page=False)
    return TestClient(app)


@pytest.fixture(scope="module")
def client(lake: Lake) -> TestClient:
    return client_for(lake.settings)


def at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def test_signals_are_one_array_per_series_and_the_timestamps(client: TestClient) -> None:
    answer = client.get(
        "/api/signals",
        params={"service": SERVICE, "from": at(START), "to": at(START + timedelta(hours=1))},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["service"] == SERVICE
    assert (body["from"], body["to"]) == ("2026-12-01T23:30:00.000Z", "2026-12-02T00:30:00.000Z")
    assert [s["name"] for s in body["series"]] == ["cpu", "latency"]
    assert body["series"][1] == {
        "name": "latency",
        "signal": "metric",
        "feature": "latency.p95",
        "column": "max",
    }
    # Every bucket of both days' partitions, in order, and nothing of the other service.
    assert body["buckets"] == BUCKETS and body["downsampled_seconds"] is None
    assert body["bucket_seconds"] == WIDTH
    assert body["timestamps"] == [epoch(START) + i * WIDTH for i in range(BUCKETS)]
    assert set(body["values"]) == {"cpu", "latency"}
    cpu = body["values"]["cpu"]
    assert len(cpu) == BUCKETS and cpu[SPIKE] == 97.0
    assert max(v for i, v in enumerate(cpu) if i != SPIKE) < 60
    # The latency series reads the max column: the mean plus one, as written.
    rng = random.Random(f"{SERVICE}-0")
    rng.gauss(0, 2.0)
    assert body["values"]["latency"][0] == pytest.approx(120.0 + rng.gauss(0, 6.0) + 1)


def test_the_range_selects_buckets_and_to_is_exclusive(client: TestClient) -> None:
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    answer = client.get(
        "/api/signals",
        params={"service": QUIET, "from": at(midnight), "to": at(midnight + timedelta(minutes=10))},
    ).json()
    assert answer["buckets"] == 60
    assert answer["timestamps"][0] == epoch(midnight)
    assert answer["timestamps"][-1] == epoch(midnight) + 590
    # A time without an offset is UTC.
    naive = client.get(
        "/api/signals",
        params={"service": QUIET, "from": "2026-12-02T00:00:00", "to": "2026-12-02T00:10:00"},
    ).json()
    assert naive["timestamps"] == answer["timestamps"]


def test_above_the_point_limit_each_point_is_the_maximum_of_its_group(lake: Lake) -> None:
    settings = lake.settings.model_copy(update={"detection_view_max_points": 50})
    answer = client_for(settings).get(
        "/api/signals",
        params={"service": SERVICE, "from": at(START), "to": at(START + timedelta(hours=1))},
    )
    body = answer.json()
    assert body["buckets"] == BUCKETS
    # (3590 s + 1) / 50 = 71.8 s, rounded up to whole 10 s buckets: 80 s per group, 45 groups.
    assert body["downsampled_seconds"] == 80
    assert len(body["timestamps"]) == 45 and len(body["values"]["cpu"]) == 45
    assert body["timestamps"][:2] == [epoch(START), epoch(START) + 80]
    # The one-bucket spike survives: the group holding bucket 100 (1000 s in) is group 12.
    assert max(body["values"]["cpu"]) == 97.0
    assert body["values"]["cpu"].index(97.0) == 12


def test_downsampling_keeps_gaps_and_the_maximum_of_each_series() -> None:
    points = [
        Point(float(t), {"a": float(t % 7)} | ({"b": 5.0} if t < 30 else {})) for t in range(100)
    ]
    timestamps, values, step = view.downsample(points, ["a", "b", "c"], 10)
    assert step == 10 and timestamps == [float(t) for t in range(0, 100, 10)]
    assert values["a"] == [6.0] * 10
    assert values["b"] == [5.0, 5.0, 5.0] + [None] * 7
    assert values["c"] == [None] * 10
    same, untouched, none = view.downsample(points[:10], ["a"], 10)
    assert none is None and same == [float(t) for t in range(10)]
    assert untouched["a"] == [float(t % 7) for t in range(10)]

    # Six hours of 10 s buckets into 2,000 points: groups of two whole buckets, not of 11 s.
    six_hours = [Point(t * 10.0, {"a": float(t)}) for t in range(2160)]
    timestamps, values, step = view.downsample(six_hours, ["a"], 2000)
    assert step == 20 and len(timestamps) == 1080
    assert values["a"][:3] == [1.0, 3.0, 5.0]


def test_a_service_with_no_features_gets_empty_arrays(client: TestClient) -> None:
    body = client.get("/api/signals", params={"service": "no-such-service"}).json()
    assert body["timestamps"] == [] and body["values"] == {"cpu": [], "latency": []}
    assert body["buckets"] == 0


def test_before_the_features_table_exists_there_is_nothing_to_show(lake: Lake) -> None:
    # The emulator's Glue catalog is per region: in another one, telemetry.features is missing.
    elsewhere = lake.settings.model_copy(update={"aws_region": "eu-west-3"})
    client = client_for(elsewhere)
    assert client.get("/api/signals/services").json() == []
    body = client.get("/api/signals", params={"service": SERVICE}).json()
    assert body["buckets"] == 0 and body["timestamps"] == []


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "must be before"),
        ({"from": "2026-12-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "must be before"),
        ({"from": "2026-11-01T00:00:00Z", "to": "2026-11-09T00:00:00Z"}, "longer than 7 days"),
        ({"from": "yesterday"}, "ISO 8601"),
        ({"to": "-28"}, "ISO 8601"),
        ({"to": "0001-01-01T00:10:00Z"}, "between the years"),
        ({"to": "0001-01-01T00:00:00+14:00"}, "between the years"),
        ({"service": ""}, "service"),
        ({"service": "x" * 201}, "service"),
    ],
)
def test_bad_input_is_a_422_that_says_what_is_wrong(
    client: TestClient, params: dict[str, str], words: str
) -> None:
    for path in ("/api/signals", "/api/ground-truth-windows"):
        answer = client.get(path, params={"service": SERVICE, **params})
        assert answer.status_code == 422, (path, answer.text)
        assert words in answer.text, answer.text
        assert answer.json()["error"] in {"bad_range", "validation_error"}
    assert client.get("/api/signals").status_code == 422  # no service


def test_services_with_features_and_their_newest_bucket(client: TestClient) -> None:
    answer = client.get("/api/signals/services")
    assert answer.status_code == 200, answer.text
    newest = at(START + timedelta(seconds=(BUCKETS - 1) * WIDTH)).replace("Z", ".000Z")
    assert answer.json() == [
        {"service": QUIET, "latest": newest},
        {"service": SERVICE, "latest": newest},
    ]


def test_ground_truth_windows_of_the_service_in_the_range(client: TestClient) -> None:
    answer = client.get(
        "/api/ground-truth-windows",
        params={"service": SERVICE, "from": at(START), "to": at(START + timedelta(hours=1))},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["available"] is True and body["reason"] is None
    assert [w["id"] for w in body["windows"]] == ["in-range", "still-open"]
    closed, still_open = body["windows"]
    assert closed["anomaly_type"] == "cpu_spike"
    assert (closed["start"], closed["end"]) == (
        "2026-12-01T23:40:00.000Z",
        "2026-12-01T23:45:00.000Z",
    )
    assert still_open["end"] is None
    assert still_open["scenario_id"] == XSS  # data, passed on as it is; the page shows it as text


def test_every_page_of_the_ground_truth_is_read(
    lake: Lake, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(view, "GROUND_TRUTH_PAGE", 1)
    before = lake.orchestrator.requests
    body = client.get(
        "/api/ground-truth-windows",
        params={"service": SERVICE, "from": at(START), "to": at(START + timedelta(hours=1))},
    ).json()
    assert [w["id"] for w in body["windows"]] == ["in-range", "still-open"]
    assert lake.orchestrator.requests - before == 4  # one window per page


def test_ground_truth_unavailable_is_said_not_failed(lake: Lake, client: TestClient) -> None:
    params = {"service": SERVICE, "from": at(START), "to": at(START + timedelta(hours=1))}
    nobody = lake.settings.model_copy(
        update={"orchestrator_port": free_port(), "detection_view_ground_truth_timeout_seconds": 1}
    )
    began = time.monotonic()
    body = client_for(nobody).get("/api/ground-truth-windows", params=params).json()
    assert time.monotonic() - began < 5
    assert body["available"] is False and body["windows"] == []
    assert "did not answer" in body["reason"]

    lake.orchestrator.broken = (500, {"error": "internal"})
    try:
        body = client.get("/api/ground-truth-windows", params=params).json()
        assert (body["available"], body["reason"]) == (False, "the orchestrator answered HTTP 500")
        lake.orchestrator.broken = (200, {"items": [{"id": 1}], "total": 1})
        body = client.get("/api/ground-truth-windows", params=params).json()
        assert body["available"] is False
        assert "not a ground-truth page" in body["reason"]
    finally:
        lake.orchestrator.broken = None


def test_the_scoreboard_is_the_published_document(lake: Lake, client: TestClient) -> None:
    s3 = aws.client("s3", lake.settings)
    s3.delete_object(Bucket="md-models", Key=view.SCOREBOARD_KEY)
    missing = client.get("/api/scoreboard")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "scoreboard_not_found",
        "message": "no scoreboard yet: run python -m benchmarks.detection --publish",
    }
    document = {
        "seed": 7,
        "overall": {"precision": 0.93, "recall": 0.91},
        "per_type": [{"anomaly_type": "cpu_spike", "recall": 1.0}],
    }
    s3.put_object(Bucket="md-models", Key=view.SCOREBOARD_KEY, Body=orjson.dumps(document))
    try:
        answer = client.get("/api/scoreboard")
        assert answer.status_code == 200 and answer.json() == document
        s3.put_object(Bucket="md-models", Key=view.SCOREBOARD_KEY, Body=b"{not json")
        broken = client.get("/api/scoreboard")
        assert broken.status_code == 503 and "is not JSON" in broken.json()["message"]
    finally:
        s3.delete_object(Bucket="md-models", Key=view.SCOREBOARD_KEY)


def test_the_page_loads_only_its_own_files_under_a_strict_csp(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    parsed = PageAssets()
    parsed.feed(page.text)
    assert parsed.scripts and None not in parsed.scripts
    assert parsed.inline_styles == 0
    assert {"service", "range", "charts", "bands", "open-events", "scoreboard"} <= parsed.ids
    assets = [*(s for s in parsed.scripts if s), *parsed.stylesheets]
    assert "/static/detection/view.js" in assets
    assert "/static/common/vendor/uplot/uPlot.iife.min.js" in assets
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200, asset
    assert client.get("/static/detection/../view.py").status_code == 404


def test_the_page_script_never_writes_html() -> None:
    script = (view.STATIC_DIR / "view.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script)


def test_openapi_documents_the_view_endpoints_and_their_errors(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/signals", "/api/ground-truth-windows"):
        assert "422" in paths[path]["get"]["responses"], path
    assert "404" in paths["/api/scoreboard"]["get"]["responses"]
    assert "/api/signals/services" in paths
    assert "/" not in paths
