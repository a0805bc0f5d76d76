"""Faust agents: hasher (uploads -> hashes), matcher (hashes -> matches), actioner (matches -> actions)."""
