"""A simulated fleet of meters: the real firmware ``Meter`` in one process.

CPython only (the meters themselves are the device code; the fleet around them
is not). Never imports Django or the platform: it speaks MQTT like any meter.

- ``profiles``: power curves (solar with clouds, households, street lights,
  batteries balancing the grid), integer watts, exact energy.
- ``clock``: ``SimClock``, accelerated simulated time with real-time
  ``monotonic()``, shareable between processes.
- ``plan``: ``MeterSpec`` (one meter to simulate) and ``fleet_plan`` (a
  curve per meter, roofs sized for the grid's loss).
- ``drivers``: the energy source and relay a simulated meter runs on.
- ``faults``: an outage, garbage messages, a meter whose import jumps.
- ``fleet``: ``Fleet``, N meters stepped through time, a progress line per
  interval.
- ``cli`` / ``python -m firmware.sim``: run a fleet from a meters file
  against a broker.
"""

from .clock import SimClock
from .faults import Fault, fault_parse
from .fleet import Fleet, FleetStats
from .plan import MeterSpec, profile_for

__all__ = ["Fault", "Fleet", "FleetStats", "MeterSpec", "SimClock", "fault_parse", "profile_for"]
