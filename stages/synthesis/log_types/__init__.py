"""Every log type's generator; importing the package fills ``registry.REGISTRY``."""

from stages.synthesis.log_types import (  # noqa: F401  (imported for their registrations)
    application,
    business_intelligence,
    compliance,
    database,
    fraud_aml,
    infrastructure,
    integration,
    monitoring,
    network,
    security,
    specialized,
    transaction,
    user_behavior,
)
from stages.synthesis.log_types.registry import REGISTRY, Ctx, LogType

__all__ = ["REGISTRY", "Ctx", "LogType"]
