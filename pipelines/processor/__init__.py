"""Orders become shipments on confluent-kafka: the consume-transform-produce processor
(`processor.py`: at-most-once, at-least-once or exactly-once with transactions) and its pure-Python
transform (`shipments.py`: the same shipments and reason codes as the Spark job writes).

Apart from the generic client toolkit in `pipelines.kafka` (producer, consumer, admin, groups, ACLs,
dead-letter writer), which it uses.
"""
