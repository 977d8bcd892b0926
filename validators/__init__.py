"""Phase 3: counts, sampled deep-compare, checksum diff, repair."""
