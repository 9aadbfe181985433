"""Signed releases: OCI artifacts, signatures, the four-step verification,
the last-known-good lifecycle and the control-plane poller (docs/contracts.md)."""
