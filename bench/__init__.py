"""`make bench`: every figure next to its baseline measured in the same run (see docs/performance.md)."""
