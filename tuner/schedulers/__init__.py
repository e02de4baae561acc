"""Trial schedulers: ASHA with a journal, so a resumed search keeps its rungs."""
