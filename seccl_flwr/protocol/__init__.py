"""Protocol primitives: canonical encoding, EIP-712 digests, sparsification, Borda."""
