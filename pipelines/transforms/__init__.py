"""Pure DataFrame -> DataFrame transforms: no reads, no writes, no queries, no sessions."""
