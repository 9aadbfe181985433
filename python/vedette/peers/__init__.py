"""Peer transport: sealed evidence replicated between nodes over mutual TLS,
the beacon and the small-fleet PKI (docs/contracts.md, "Peer sync protocol")."""
