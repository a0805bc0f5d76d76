"""The jobs a process composes, one service each, shared by the worker and the API:

- output: the one Kafka producer adapter (send, send_many, deliver, dead letters), deliveries checked
- bank_view: the bank view followed from the state topics, snapshots, readiness and staleness
- content_ids: bank content ids claimed from hma.content-ids
- pools: the worker's executors (hashing processes, fetch threads, the index thread)
- events: consumed events decoded, dead letters for those that do not decode
- feedback_tallies, read_back: the API's feedback tallies and its read-your-writes write path
- worker: the bundle of services that a worker hands its agents
"""
