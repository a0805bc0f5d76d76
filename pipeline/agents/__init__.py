"""Faust agents: hasher (uploads -> hashes), matcher (hashes -> matches and actions), actioner
(retroactive matches -> actions), flood, feedback, recent; shard matcher and merger in shard mode."""
