"""Chain layer: connections, the embedded chain endpoint and the CSC contract client."""
