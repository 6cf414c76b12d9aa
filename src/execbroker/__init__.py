"""execbroker: an IVOA ExecutionBroker."""

__version__ = "0.1.0"
