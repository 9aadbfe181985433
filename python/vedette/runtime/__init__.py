"""The runtime plane: identity, intents and tools (the decision pipeline builds on these)."""
