"""The service registry: one typed entry per service of the pipeline.

Each entry (compose name, module, port, health path, dependencies) is the single list that the
fleet (``start.sh`` / ``stop.sh``), the pipeline check, the compose files' static test and the
benchmarks agree on. A service takes part only once its module can be run (``python -m <module>``
needs ``<module>.__main__``), so a later issue enables a service by adding that file, not by
editing this one.

The names are also the compose host names the services answer to; services read those from
``stages.common.hosts.SERVICE_HOSTS`` (services never import ``stages.ops``), and a test holds the
two lists to each other.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from stages.common.config import Settings

EMULATOR = "emulator"


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
        "etl",
        "stages.etl",
        "etl_port",
        8020,
        "ETL (Stage 02: raw zone -> Iceberg tables)",
        depends_on=(EMULATOR,),
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
    Service(
        "dashboard",
        "stages.dashboard",
        "dashboard_port",
        8010,
        "Dashboard",
        depends_on=(EMULATOR, "kinesis-consumer"),
        uses_aws=True,
    ),
)
BY_NAME: dict[str, Service] = {svc.name: svc for svc in SERVICES}
# Names people also use: the compose files call the emulator `localstack`.
ALIASES = {"localstack": EMULATOR, "consumer": "kinesis-consumer"}


def _client_host(host: str) -> str:
    # A wildcard bind address is not an address to connect to.
    return "127.0.0.1" if host in {"", "0.0.0.0", "::"} else host
