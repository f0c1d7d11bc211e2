"""Health-checked pools: probes, per-member rise/fall with flap damping, a quorum of
checkers, and the set of addresses each pool should publish.

A leaf like ``signer``: it imports ``settings`` and nothing else of zonefan. It decides what
a pool publishes; turning a decision into a changeset is the composition root's part.
"""

from health.config import (
    Check,
    Damping,
    HealthConfig,
    Member,
    Pool,
    parse_health,
)
from health.errors import HealthConfigError, HealthError, ReportError
from health.monitor import HealthMonitor
from health.pool import (
    CheckerReport,
    Degraded,
    PoolDecision,
    PoolHealth,
    Recovered,
    Transition,
)
from health.probes import ProbeResult, run_probe

__all__ = [
    "Check",
    "CheckerReport",
    "Damping",
    "Degraded",
    "HealthConfig",
    "HealthConfigError",
    "HealthError",
    "HealthMonitor",
    "Member",
    "Pool",
    "PoolDecision",
    "PoolHealth",
    "ProbeResult",
    "Recovered",
    "ReportError",
    "Transition",
    "parse_health",
    "run_probe",
]
