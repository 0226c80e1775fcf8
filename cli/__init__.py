"""The `quorum` command: parse, call, print (one module per command group)."""
