"""Network logs: traffic, latency, packet loss."""

from __future__ import annotations

from stages.common import estate
from stages.synthesis.log_types.registry import (
    ALL_SERVICES,
    Attrs,
    Ctx,
    between,
    internal_ip,
    ms,
    register,
)

CAT = "network"


def _traffic(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "src.ip": internal_ip(r),
        "dst.ip": internal_ip(r),
        "dst.port": r.choice((443, 5432, 8080)),
        "bytes_in": r.randrange(1_000, 5_000_000),
        "bytes_out": r.randrange(1_000, 5_000_000),
        "flows": r.randrange(10, 400),
        "distinct_ports": r.randrange(1, 4),
        "retransmits": r.randrange(0, 5),
    }


def _traffic_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type == "port_scan":
        return {
            "src.ip": c.focus_ip,
            "flows": 2_000 + int(c.rng.uniform(0, 60_000) * c.k),
            "distinct_ports": 100 + int(c.rng.uniform(0, 60_000) * c.k),
            "retransmits": a["retransmits"] + 1,
        }
    return {
        "src.ip": a["src.ip"],
        "flows": a["flows"],
        "distinct_ports": a["distinct_ports"],
        "retransmits": 500 + int(c.rng.uniform(0, 50_000) * c.k),
    }


def _traffic_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["distinct_ports"] > 50 or a["retransmits"] > 100 else "DEBUG"
    return level, (
        f"flow {a['src.ip']} -> {a['dst.ip']}:{a['dst.port']}: {a['flows']} flows, "
        f"{a['distinct_ports']} ports, {a['retransmits']} retransmits"
    )


def _latency(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "source.host": c.host,
        "destination": r.choice(estate.SERVICE_NAMES),
        "rtt_ms": ms(r, 0.3, 3),
        "jitter_ms": ms(r, 0.05, 0.8),
        "probe": "tcp",
    }


def _latency_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type == "latency_jitter":
        return {
            "rtt_ms": round(a["rtt_ms"] * c.rng.choice((0.5, 3.0)), 2),
            "jitter_ms": between(c, 5, 80),
        }
    return {"rtt_ms": between(c, 40, 600), "jitter_ms": between(c, 5, 50)}


def _latency_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["rtt_ms"] > 20 or a["jitter_ms"] > 4 else "DEBUG"
    return (
        level,
        f"{a['probe']} probe {a['source.host']} -> {a['destination']}: "
        f"rtt {a['rtt_ms']}ms, jitter {a['jitter_ms']}ms",
    )


def _loss(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "interface": r.choice(("eth0", "eth1")),
        "zone": r.choice(("eu-1a", "eu-1b")),
        "loss_pct": round(r.uniform(0, 0.05), 3),
        "packets_sent": r.randrange(10_000, 200_000),
        "link": "up",
    }


def _loss_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {"loss_pct": between(c, 5, 60), "link": "degraded" if c.k < 0.8 else "down"}


def _loss_text(a: Attrs) -> tuple[str, str]:
    level = "ERROR" if a["loss_pct"] > 1 else "DEBUG"
    return (
        level,
        f"{a['interface']} in {a['zone']}: {a['loss_pct']}% loss "
        f"over {a['packets_sent']} packets, link {a['link']}",
    )


register(
    "network_traffic_log",
    CAT,
    ALL_SERVICES,
    "Flow summaries",
    _traffic,
    _traffic_anomaly,
    _traffic_text,
)
register(
    "network_latency_log",
    CAT,
    ALL_SERVICES,
    "Round-trip probes",
    _latency,
    _latency_anomaly,
    _latency_text,
)
register(
    "packet_loss_log", CAT, ALL_SERVICES, "Interface packet loss", _loss, _loss_anomaly, _loss_text
)
