"""``python -m stages.detection score-csv INPUT OUTPUT``: score external ``timestamp,value`` series.

INPUT is one CSV file, or a folder whose ``*.csv`` files (at any depth) are scored into the same
relative paths under OUTPUT. Each file must have a header naming a ``timestamp`` and a ``value``
column (other columns are ignored, so a ``label`` column never reaches a detector); a timestamp is
ISO 8601 (a naive one is UTC) or epoch seconds; a value is a finite number. Each output file has
the header ``timestamp,value,anomaly_score`` and exactly one row per input data row, in input
order, with the timestamp and value as they were written and the ensemble's score in [0, 1]
(``ensemble.SeriesEnsemble`` with its default settings: each point is scored with only the points
before it, and the same input always gives the same output).

Every input is read and checked before anything is written, and each output is written to a
temporary file renamed into place, so an error never leaves a half-written result. Bad input
(missing column, bad timestamp or value, empty file), an OUTPUT inside INPUT, an output that would
overwrite an input and a link that leads outside INPUT are refused with ``file:line: reason`` on
stderr and exit status 2; a failure to write exits with 1.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PROG = "python -m stages.detection"
HEADER = ("timestamp", "value", "anomaly_score")
_EPOCH = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")


class InputError(Exception):
    """Something the user must fix in what they gave; printed as ``where: reason``."""

    def __init__(self, where: Path | str, reason: str, line: int | None = None) -> None:
        location = f"{where}:{line}" if line is not None else str(where)
        super().__init__(f"{location}: {reason}")


@dataclass(slots=True)
class Series:
    source: Path
    target: Path
    timestamps: list[str]
    values: list[str]
    epochs: list[float]
    numbers: list[float]


def parse_timestamp(text: str) -> float:
    """Epoch seconds from ISO 8601 (naive = UTC) or from a number of epoch seconds."""
    if _EPOCH.match(text):
        seconds = float(text)
        if math.isfinite(seconds):
            return seconds
        raise ValueError(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_series(source: Path, target: Path) -> Series:
    try:
        with source.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            while header is not None and not any(cell.strip() for cell in header):
                header = next(reader, None)
            if header is None:
                raise InputError(source, "empty file: expected a header with timestamp,value")
            names = [cell.strip().lower() for cell in header]
            missing = [name for name in ("timestamp", "value") if name not in names]
            if missing:
                raise InputError(
                    source,
                    f"missing column {' and '.join(missing)} (header: {','.join(header)})",
                    reader.line_num,
                )
            t_col, v_col = names.index("timestamp"), names.index("value")
            width = max(t_col, v_col) + 1
            series = Series(source, target, [], [], [], [])
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # a blank line is not a data row
                line = reader.line_num
                if len(row) < width:
                    raise InputError(
                        source, f"{len(row)} field(s), expected at least {width}", line
                    )
                stamp, raw = row[t_col].strip(), row[v_col].strip()
                try:
                    epoch = parse_timestamp(stamp)
                except (ValueError, OverflowError):
                    raise InputError(
                        source, f"timestamp {stamp!r} is neither ISO 8601 nor epoch seconds", line
                    ) from None
                try:
                    number = float(raw)
                except ValueError:
                    number = math.nan
                if not math.isfinite(number):
                    raise InputError(source, f"value {raw!r} is not a finite number", line)
                series.timestamps.append(stamp)
                series.values.append(raw)
                series.epochs.append(epoch)
                series.numbers.append(number)
    except UnicodeDecodeError:
        raise InputError(source, "not UTF-8 text") from None
    except csv.Error as error:
        raise InputError(source, f"not a readable CSV file ({error})") from None
    except OSError as error:
        raise InputError(source, f"cannot read: {error.strerror or error}") from None
    if not series.numbers:
        raise InputError(source, "no data rows after the header")
    return series


def score(series: Series) -> list[float]:
    # Imported here so that refusing bad input does not first load numpy and the forest.
    from stages.detection.ensemble import SeriesEnsemble

    ensemble = SeriesEnsemble()
    return [
        ensemble.update(epoch, number).decision.score
        for epoch, number in zip(series.epochs, series.numbers, strict=True)
    ]


def write_scores(series: Series, scores: Sequence[float]) -> None:
    target = series.target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Renamed into place only once complete; removed on any failure (hence no context manager).
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
        "w",
        newline="",
        encoding="utf-8",
        dir=target.parent,
        prefix=f".{target.name}.",
        suffix=".tmp",
        delete=False,
    )
    try:
        with handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(HEADER)
            for stamp, raw, value in zip(series.timestamps, series.values, scores, strict=True):
                writer.writerow((stamp, raw, f"{value:.6f}"))
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def plan(input_path: Path, output_path: Path) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs, after every path check."""
    if not input_path.exists():
        raise InputError(input_path, "no such file or directory")
    source_root = input_path.resolve()
    if input_path.is_file():
        target = output_path / input_path.name if output_path.is_dir() else output_path
        if target.resolve() == source_root:
            raise InputError(output_path, "OUTPUT is INPUT: refusing to overwrite the input")
        return [(input_path, target)]
    if not input_path.is_dir():
        raise InputError(input_path, "neither a file nor a directory")
    target_root = output_path.resolve()
    if _inside(target_root, source_root):
        raise InputError(output_path, f"OUTPUT is inside INPUT ({input_path}): refused")
    if output_path.exists() and not output_path.is_dir():
        raise InputError(output_path, "INPUT is a directory, so OUTPUT must be one too")
    pairs: list[tuple[Path, Path]] = []
    for folder, dirs, files in os.walk(input_path):
        dirs.sort()
        for name in dirs:
            # os.walk does not descend into linked folders; one that leads out is an error, not
            # a silent omission (one that stays inside is walked through its real path).
            linked = Path(folder) / name
            if linked.is_symlink() and not _inside(linked.resolve(), source_root):
                raise InputError(linked, f"leads outside INPUT ({input_path}): refused")
        for name in sorted(files):
            if not name.lower().endswith(".csv"):
                continue
            source = Path(folder) / name
            if not _inside(source.resolve(), source_root):
                raise InputError(source, f"leads outside INPUT ({input_path}): refused")
            pairs.append((source, output_path / source.relative_to(input_path)))
    if not pairs:
        raise InputError(input_path, "no .csv files in this directory")
    sources = {source.resolve() for source, _ in pairs}
    for _, target in pairs:
        resolved = target.resolve()
        if resolved in sources:
            raise InputError(target, "would overwrite an input file: refused")
        if not _inside(resolved, target_root):
            raise InputError(target, f"leads outside OUTPUT ({output_path}): refused")
    return pairs


def score_csv(input_path: Path, output_path: Path) -> list[Series]:
    """Check everything, then score and write every file; returns what was written."""
    everything = [read_series(source, target) for source, target in plan(input_path, output_path)]
    for series in everything:
        write_scores(series, score(series))
    return everything


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Stage 04 detection tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = commands.add_parser(
        "score-csv",
        help="score timestamp,value CSV files with the default ensemble",
        description="Score a timestamp,value CSV file (or every .csv under a folder, mirrored "
        "into OUTPUT) and write timestamp,value,anomaly_score, one row per input row.",
    )
    command.add_argument("input", type=Path, metavar="INPUT", help="a CSV file or a folder")
    command.add_argument("output", type=Path, metavar="OUTPUT", help="a CSV file or a folder")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        written = score_csv(args.input, args.output)
    except InputError as error:
        print(f"{PROG} score-csv: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{PROG} score-csv: error: cannot write: {error}", file=sys.stderr)
        return 1
    rows = sum(len(series.numbers) for series in written)
    print(
        f"scored {rows} rows in {len(written)} file(s) in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 0
