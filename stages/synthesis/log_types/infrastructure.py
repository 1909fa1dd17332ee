"""Infrastructure logs: hosts, containers, Kubernetes, disks."""

from __future__ import annotations

from stages.synthesis.log_types.registry import (
    ALL_SERVICES,
    Attrs,
    Ctx,
    between,
    level_for,
    register,
)

CAT = "infrastructure"


def _system_resource(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "host.name": c.host,
        "cpu.percent": round(r.uniform(15, 55), 1),
        "memory.percent": round(r.uniform(40, 68), 1),
        "load.avg_1m": round(r.uniform(0.3, 2.5), 2),
        "process.count": r.randrange(180, 320),
        "gc.pause_ms": round(r.uniform(2, 20), 1),
    }


def _system_resource_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type in ("memory_leak", "gc_pressure", "container_oom"):
        return {
            "memory.percent": between(c, 80, 99.5),
            "gc.pause_ms": between(c, 120, 2500),
            "cpu.percent": between(c, 60, 80),
            "load.avg_1m": between(c, 3, 6),
        }
    return {
        "cpu.percent": between(c, 82, 99.9),
        "load.avg_1m": between(c, 6, 24),
        "memory.percent": round(a["memory.percent"] + between(c, 1, 6), 1),
        "gc.pause_ms": between(c, 25, 60),
    }


def _system_resource_text(a: Attrs) -> tuple[str, str]:
    hot = a["cpu.percent"] > 80 or a["memory.percent"] > 85
    return level_for(True, hot), (
        f"Resource usage on {a['host.name']}: cpu {a['cpu.percent']}%, "
        f"memory {a['memory.percent']}%, load {a['load.avg_1m']}"
    )


def _container_event(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "container.id": f"{r.getrandbits(48):012x}",
        "container.image": f"registry.local/{c.service}:1.{r.randrange(20, 40)}.{r.randrange(9)}",
        "event": r.choice(("start", "health_status: healthy", "exec_start")),
        "exit_code": 0,
        "memory.limit_mb": 1024,
        "memory.used_mb": r.randrange(300, 700),
        "restart_count": r.randrange(0, 2),
    }


def _container_event_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "event": "oom_kill",
        "exit_code": 137,
        "memory.used_mb": 1024,
        "restart_count": a["restart_count"] + 2 + int(10 * c.k),
    }


def _container_event_text(a: Attrs) -> tuple[str, str]:
    if a["event"] == "oom_kill":
        return "ERROR", (
            f"Container {a['container.id']} killed: OOM ({a['memory.used_mb']}MB of "
            f"{a['memory.limit_mb']}MB), restart #{a['restart_count']}"
        )
    return "INFO", f"Container {a['container.id']} {a['event']} ({a['container.image']})"


def _k8s_event(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "k8s.namespace": "banking",
        "k8s.pod.name": f"{c.service}-{r.getrandbits(24):06x}-{r.getrandbits(20):05x}",
        "k8s.node.name": f"node-{r.randrange(1, 7)}",
        "reason": r.choice(("Scheduled", "Pulled", "Created", "Started")),
        "type": "Normal",
        "count": 1,
    }


def _k8s_event_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {
        "reason": c.rng.choice(("OOMKilling", "BackOff", "Unhealthy")),
        "type": "Warning",
        "count": 3 + int(c.rng.uniform(0, 40) * c.k),
    }


def _k8s_event_text(a: Attrs) -> tuple[str, str]:
    level = "WARN" if a["type"] == "Warning" else "INFO"
    return level, f"{a['reason']}: pod {a['k8s.pod.name']} on {a['k8s.node.name']} (x{a['count']})"


def _disk_usage(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "host.name": c.host,
        "mount": r.choice(("/", "/var/lib/data", "/var/log")),
        "disk.used_percent": round(r.uniform(35, 72), 1),
        "disk.free_gb": round(r.uniform(40, 180), 1),
        "io.wait_ms": round(r.uniform(0.5, 8), 2),
        "inodes.used_percent": round(r.uniform(5, 30), 1),
    }


def _disk_usage_anomaly(c: Ctx, a: Attrs) -> Attrs:
    if c.anomaly_type == "disk_io_bottleneck":
        return {
            "io.wait_ms": between(c, 40, 400),
            "disk.used_percent": a["disk.used_percent"] + 1,
            "disk.free_gb": round(a["disk.free_gb"] * 0.97, 1),
        }
    return {
        "disk.used_percent": between(c, 91, 99.9),
        "disk.free_gb": round(c.rng.uniform(0.1, 4) * (1.2 - c.k), 2),
        "io.wait_ms": between(c, 15, 120),
    }


def _disk_usage_text(a: Attrs) -> tuple[str, str]:
    full = a["disk.used_percent"] > 90
    slow = a["io.wait_ms"] > 30
    return level_for(True, full or slow), (
        f"Disk {a['mount']} on {a['host.name']}: {a['disk.used_percent']}% used, "
        f"{a['disk.free_gb']}GB free, io wait {a['io.wait_ms']}ms"
    )


def _host_health(c: Ctx) -> Attrs:
    r = c.rng
    return {
        "host.name": c.host,
        "status": "healthy",
        "checks.failed": 0,
        "uptime_hours": r.randrange(24, 2000),
        "temperature_c": round(r.uniform(38, 58), 1),
    }


def _host_health_anomaly(c: Ctx, a: Attrs) -> Attrs:
    return {"status": "degraded" if c.k < 0.7 else "critical", "checks.failed": 1 + int(4 * c.k)}


def _host_health_text(a: Attrs) -> tuple[str, str]:
    ok = a["status"] == "healthy"
    return level_for(ok or a["status"] == "degraded", not ok), (
        f"Host {a['host.name']} {a['status']}: {a['checks.failed']} checks failing, "
        f"up {a['uptime_hours']}h"
    )


register(
    "system_resource_log",
    CAT,
    ALL_SERVICES,
    "CPU, memory and load samples per host",
    _system_resource,
    _system_resource_anomaly,
    _system_resource_text,
)
register(
    "container_event_log",
    CAT,
    ALL_SERVICES,
    "Container runtime lifecycle events",
    _container_event,
    _container_event_anomaly,
    _container_event_text,
)
register(
    "kubernetes_event_log",
    CAT,
    ALL_SERVICES,
    "Kubernetes events for the service's pods",
    _k8s_event,
    _k8s_event_anomaly,
    _k8s_event_text,
)
register(
    "disk_usage_log",
    CAT,
    ALL_SERVICES,
    "Disk space and I/O wait per mount",
    _disk_usage,
    _disk_usage_anomaly,
    _disk_usage_text,
)
register(
    "host_health_log",
    CAT,
    ALL_SERVICES,
    "Host health agent summaries",
    _host_health,
    _host_health_anomaly,
    _host_health_text,
)
