"""Offline tools over a config's routing policy: `llamaswap check` and `llamaswap simulate`.

Both build the very scheduler and policy the server runs (through
`llamaswap.scheduling.from_config`) and drive them without processes or sleeps:
`check` explores them with Hypothesis and a search over running sets, `simulate`
replays a request trace on a virtual clock. The live router's tests call
`simulation.simulate` to compare the two.
"""

from .simulation import Seconds, SimulationResult, simulate
from .trace import TraceRequest

__all__ = ["Seconds", "SimulationResult", "TraceRequest", "simulate"]
