"""Running a search: the checks before it, the Tuner's assembly, the run, resume, the lock, `mixtune sync`."""
