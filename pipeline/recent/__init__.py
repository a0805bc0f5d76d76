"""Recent uploads: a time-bucketed ring of their hashes, searched when a signal is newly banked."""
