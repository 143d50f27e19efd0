"""Running many fields: one field job (lock, skip check, infer, atomic write, outcome) driven
serially, by a process pool on one machine, or by MPI ranks on a cluster (ARCHITECTURE.md 6)."""
