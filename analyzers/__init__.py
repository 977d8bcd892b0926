"""Phase 1: rank tables by read/write ratio, find blockers, recommend."""
