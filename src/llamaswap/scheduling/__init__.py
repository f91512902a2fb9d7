"""Sans-IO routing: the scheduler and the eviction policies (no I/O, no clock, no awaits)."""

from .errors import (
    BlockedByUnswappable,
    ModelNotFound,
    ModelNotLoaded,
    ModelUnloaded,
    ReloadInProgress,
    RoutingError,
    ShuttingDown,
    SwapFailed,
    TooManyRequests,
    Unschedulable,
)
from .pinning import Pinned
from .policies import (
    CannotFit,
    CapacityGuard,
    FitPolicy,
    Group,
    GroupPolicy,
    MatrixAlternative,
    MatrixPolicy,
    Policy,
    Resources,
    Usage,
    rules_allowing,
)
from .scheduler import Effects, ModelRules, Request, Scheduler, Swap

__all__ = [
    "BlockedByUnswappable",
    "CannotFit",
    "CapacityGuard",
    "Effects",
    "FitPolicy",
    "Group",
    "GroupPolicy",
    "MatrixAlternative",
    "MatrixPolicy",
    "ModelNotFound",
    "ModelNotLoaded",
    "ModelRules",
    "ModelUnloaded",
    "Pinned",
    "Policy",
    "ReloadInProgress",
    "Request",
    "Resources",
    "RoutingError",
    "Scheduler",
    "ShuttingDown",
    "Swap",
    "SwapFailed",
    "TooManyRequests",
    "Unschedulable",
    "Usage",
    "rules_allowing",
]
