"""The benchmark harness: `python -m bench` (or `make bench`) measures the project next to the
alternatives a user would consider, on this machine, in one run. Never run by `make test`.

Workloads (each checked for correctness before its number counts):

- `producer`: `pipelines generate sales` against Kafka's own ProducerPerformance tool (the same
  payloads, partitions, acks and batching) on the same broker;
- `aggregation`: revenue per category per minute over a preloaded topic: the project's Spark job
  (available-now, to Delta), the naive confluent-kafka poll loop, Quix Streams, and Kafka's
  ConsumerPerformance as the ceiling; every result compared with the generator's ledger;
- `latency`: order -> shipment at fixed input rates, Spark micro-batch and real-time mode, the
  Python processor at-least-once and exactly-once;
- `startup`: launching a job -> its first committed batch.
"""
