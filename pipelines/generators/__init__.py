"""Seeded event generators: the same seed and arguments give the same events, byte for byte.

- `orders`, `sales`: the contract's events with a realistic shape (skew, cents, bounded disorder).
- `events`: the streams `pipelines generate` sends, with late and malformed events marked.
- `ledger`: the record of every event sent, with its partition and offset (the ground truth).
- `publish`: sending a stream to Kafka while writing its ledger.
"""
