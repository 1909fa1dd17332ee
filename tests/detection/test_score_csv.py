"""``python -m stages.detection score-csv`` as a user runs it: a subprocess on files."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tests.detection import synthetic
from tests.support.processes import ROOT


def score_csv(source: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stages.detection", "score-csv", str(source), str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_series(path: Path, times, values, stamp=iso, extra: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value", *(extra or {})])
        for i, (t, v) in enumerate(zip(times, values, strict=True)):
            writer.writerow(
                [stamp(float(t)), f"{v:.4f}", *(col[i] for col in (extra or {}).values())]
            )


def read_output(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def scores_of(path: Path) -> np.ndarray:
    return np.array([float(row[2]) for row in read_output(path)[1]])


def test_one_file_gives_one_row_per_input_row_in_range_and_the_same_twice(tmp_path: Path) -> None:
    series = synthetic.step(n=700, at=600, length=20)
    source = tmp_path / "in.csv"
    write_series(source, series.timestamps, series.values)
    first = score_csv(source, tmp_path / "out1.csv")
    assert first.returncode == 0, first.stderr
    assert "scored 700 rows in 1 file(s)" in first.stderr
    header, rows = read_output(tmp_path / "out1.csv")
    assert header == ["timestamp", "value", "anomaly_score"]
    inputs = list(csv.reader(source.open(newline="")))[1:]
    assert [row[:2] for row in rows] == inputs  # every row, in order, as it was written
    scores = scores_of(tmp_path / "out1.csv")
    assert ((scores >= 0.0) & (scores <= 1.0)).all()
    assert scores[600:620].max() > scores[300:600].max()
    second = score_csv(source, tmp_path / "out2.csv")
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "out1.csv").read_bytes() == (tmp_path / "out2.csv").read_bytes()


def test_epoch_seconds_iso_and_a_label_column_give_the_same_scores(tmp_path: Path) -> None:
    series = synthetic.spike(n=400, at=350)
    write_series(tmp_path / "iso.csv", series.timestamps, series.values)
    write_series(
        tmp_path / "epoch.csv", series.timestamps, series.values, stamp=lambda t: f"{t:.0f}"
    )
    # The label is the answer: a scorer that read it would score differently.
    label = ["1" if i == series.start else "0" for i in range(len(series.values))]
    write_series(
        tmp_path / "labelled.csv", series.timestamps, series.values, extra={"label": label}
    )
    for name in ("iso", "epoch", "labelled"):
        result = score_csv(tmp_path / f"{name}.csv", tmp_path / "out" / f"{name}.csv")
        assert result.returncode == 0, result.stderr
    iso_scores = scores_of(tmp_path / "out" / "iso.csv")
    assert iso_scores[series.start] >= 0.5
    assert (scores_of(tmp_path / "out" / "epoch.csv") == iso_scores).all()
    assert (scores_of(tmp_path / "out" / "labelled.csv") == iso_scores).all()


def test_a_folder_is_mirrored_into_the_output_folder(tmp_path: Path) -> None:
    source = tmp_path / "corpus"
    a = synthetic.spike(n=120, at=100)
    b = synthetic.level_shift(n=90, at=80)
    write_series(source / "a.csv", a.timestamps, a.values)
    write_series(source / "nested" / "deeper" / "b.csv", b.timestamps, b.values)
    (source / "README.txt").write_text("not a series")
    result = score_csv(source, tmp_path / "scored")
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path / "scored") for p in (tmp_path / "scored").rglob("*"))
    assert [str(p) for p in written if p.suffix] == ["a.csv", "nested/deeper/b.csv"]
    assert len(read_output(tmp_path / "scored" / "a.csv")[1]) == 120
    assert len(read_output(tmp_path / "scored" / "nested" / "deeper" / "b.csv")[1]) == 90


BAD_INPUTS = [
    ("time,value\n2024-01-01T00:00:00Z,1\n", 1, "missing column timestamp (header: time,value)"),
    ("timestamp,reading\n2024-01-01T00:00:00Z,1\n", 1, "missing column value"),
    (
        "timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:05:00Z,abc\n",
        3,
        "value 'abc' is not a finite number",
    ),
    ("timestamp,value\n2024-01-01T00:00:00Z,nan\n", 2, "value 'nan' is not a finite number"),
    ("timestamp,value\n2024-01-01T00:00:00Z,\n", 2, "value '' is not a finite number"),
    (
        "timestamp,value\n2024-01-01T00:00:00Z,1\n\nyesterday,2\n",
        4,
        "timestamp 'yesterday' is neither ISO 8601 nor epoch seconds",
    ),
    (
        "timestamp,value\n2024-13-01T00:00:00Z,1\n",
        2,
        "timestamp '2024-13-01T00:00:00Z' is neither ISO 8601 nor epoch seconds",
    ),
    ("timestamp,value\n1700000000\n", 2, "1 field(s), expected at least 2"),
    ("", None, "empty file"),
    ("timestamp,value\n", None, "no data rows after the header"),
]


@pytest.mark.parametrize(("content", "line", "message"), BAD_INPUTS)
def test_bad_input_is_refused_with_file_line_and_exit_2(
    tmp_path: Path, content: str, line: int | None, message: str
) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(content)
    result = score_csv(source, tmp_path / "out.csv")
    assert result.returncode == 2
    where = f"{source}:{line}" if line else f"{source}"
    assert f"error: {where}: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_one_bad_file_in_a_folder_writes_nothing(tmp_path: Path) -> None:
    good = synthetic.spike(n=50, at=40)
    write_series(tmp_path / "in" / "a_good.csv", good.timestamps, good.values)
    (tmp_path / "in" / "b_bad.csv").write_text("timestamp,value\n1700000000,x\n")
    result = score_csv(tmp_path / "in", tmp_path / "out")
    assert result.returncode == 2
    assert "b_bad.csv:2: value 'x' is not a finite number" in result.stderr
    assert not (tmp_path / "out").exists()


def test_paths_that_would_overwrite_or_escape_are_refused(tmp_path: Path) -> None:
    series = synthetic.spike(n=50, at=40)
    source = tmp_path / "in"
    write_series(source / "a.csv", series.timestamps, series.values)
    inside = score_csv(source, source / "scored")
    assert inside.returncode == 2
    assert "OUTPUT is inside INPUT" in inside.stderr
    same = score_csv(source / "a.csv", source / "a.csv")
    assert same.returncode == 2
    assert "OUTPUT is INPUT" in same.stderr
    outside = tmp_path / "elsewhere.csv"
    write_series(outside, series.timestamps, series.values)
    (source / "link.csv").symlink_to(outside)
    escaped = score_csv(source, tmp_path / "out")
    assert escaped.returncode == 2
    assert "link.csv: leads outside INPUT" in escaped.stderr
    (source / "link.csv").unlink()
    (tmp_path / "outside-folder").mkdir()
    (source / "linked-folder").symlink_to(tmp_path / "outside-folder")
    escaped_folder = score_csv(source, tmp_path / "out")
    assert escaped_folder.returncode == 2
    assert "linked-folder: leads outside INPUT" in escaped_folder.stderr
    missing = score_csv(tmp_path / "nothing-here", tmp_path / "out")
    assert missing.returncode == 2
    assert "nothing-here: no such file or directory" in missing.stderr
    for result in (inside, same, escaped, escaped_folder, missing):
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert not (source / "scored").exists()


def nab_like(kind: str, seed: int) -> synthetic.Labelled:
    """Shapes of the public corpora: 5-minute points over 10 days, daily seasonality, a slow
    trend, noise, and one labelled anomaly window on day 8."""
    days = 10
    times, values = synthetic.daily(days, amplitude=20.0, sigma=3.0, seed=seed)
    values = values + np.linspace(0.0, 10.0, len(values))
    start = 7 * synthetic.DAY_POINTS + 100
    if kind == "burst":  # a traffic burst on top of the daily cycle
        end = start + 12
        values[start:end] += 45.0
    elif kind == "off_season":  # the daytime level in the middle of the night
        start = 7 * synthetic.DAY_POINTS + int(0.75 * synthetic.DAY_POINTS)
        end = start + 24
        values[start:end] += 40.0
    elif kind == "drop":  # the series falls away (an outage)
        end = start + 24
        values[start:end] = values[start:end] * 0.2
    else:
        raise ValueError(kind)
    return synthetic.Labelled(times, values, start, end)


def test_nab_like_series_score_their_anomaly_above_the_normal_data(tmp_path: Path) -> None:
    corpus = {
        kind: nab_like(kind, seed) for seed, kind in enumerate(("burst", "off_season", "drop"))
    }
    for kind, series in corpus.items():
        stamp = lambda t: datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
        write_series(tmp_path / "corpus" / f"{kind}.csv", series.timestamps, series.values, stamp)
    result = score_csv(tmp_path / "corpus", tmp_path / "scored")
    assert result.returncode == 0, result.stderr
    for kind, series in corpus.items():
        scores = scores_of(tmp_path / "scored" / f"{kind}.csv")
        assert len(scores) == len(series.values)
        # NAB's probationary period is the first 15 % of a file; two days (20 %) here, the
        # seasonal detector's warm-up.
        normal = np.r_[scores[2 * synthetic.DAY_POINTS : series.start], scores[series.end + 50 :]]
        peak = scores[series.start : series.end].max()
        assert peak > normal.max(), f"{kind}: anomaly {peak:.3f} <= normal {normal.max():.3f}"
        assert peak >= 0.5, f"{kind}: anomaly peaks at {peak:.3f}"
