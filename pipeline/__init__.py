"""Phase 2 and 4: snapshot, logical-decoding source, transports, applier, sync daemon, cutover."""
