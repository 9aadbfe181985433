"""The fleet archive: sealed evidence published to NATS JetStream, read back,
verified and exported (docs/operations.md, "Fleet archive"; docs/contracts.md,
"Archive messages")."""
