"""Fakes that ship with the package, for tests of modelport and of code built on it: a clock
that moves when told, a launcher that starts nothing, load balancers that balance nothing, and a
prober whose answers are in at once."""

from modelport.testing.balancer import FakeBalancers, FakeLoadBalancer
from modelport.testing.clock import FakeClock
from modelport.testing.launcher import FakeLauncher, FakeProcess
from modelport.testing.prober import InlineProber

__all__ = ["FakeBalancers", "FakeClock", "FakeLauncher", "FakeLoadBalancer", "FakeProcess", "InlineProber"]
