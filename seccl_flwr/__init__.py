"""seccl-flwr: verifiable federated learning for Flower (the SecCL protocol)."""

__version__ = "0.1.0"
