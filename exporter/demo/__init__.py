"""A synthetic app for ``error-exporter demo``: see :mod:`exporter.demo.workload`."""

from exporter.demo.workload import CANBusError, Workload

__all__ = ["CANBusError", "Workload"]
