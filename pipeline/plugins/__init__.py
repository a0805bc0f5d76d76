"""This pipeline's own signal-type plug-ins: the types it hashes, indexes or bounds its own way
(pipeline/signal_types.py finds them; every other type is python-threatexchange's alone)."""
