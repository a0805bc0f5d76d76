"""In-memory views that each process builds from the compacted topics, and the readers that feed them."""
