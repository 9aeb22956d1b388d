"""Orders become shipments: the `orders` topic -> the `shipments` topic, malformed orders to a DLQ.

    spark-submit --jars "$(pipelines jars)" jobs/orders_to_shipments.py \\
      --bootstrap-servers HOST:PORT --source-topic orders --sink-topic shipments --checkpoint DIR \\
      [--trigger available-now|processing-time=0s|real-time[=5m]] [--dlq-topic orders.dlq]

Each valid order becomes a shipment keyed by the order's key, with its headers, and the value
`{"shipment_id": "ship-<order_id>", "order_id", "customer_id", "status": "pending", "created_at"}`
(`created_at` is the order's timestamp, the same text). Orders that do not parse go to
`<source-topic>.dlq` with the reason; the job never stops on bad input.

At-least-once (Spark's kafka sink): after a crash between writing a batch and committing it, that
batch's shipments are written again. Consumers deduplicate by `shipment_id`
(`pipelines.kafka.dedupe`). `--trigger real-time` is Spark's low-latency mode: update mode, stateless
queries, Kafka in and out, and 2 task slots per source partition (checked before starting).
An available-now run ends with one JSON line: records read, shipped, dead-lettered.

Same arguments under `python jobs/orders_to_shipments.py` and as the `pipelines-orders-to-shipments`
command. The job itself (wiring, arguments and their rules) is `pipelines/jobs/orders_to_shipments.py`; secured
clusters take their credentials from the environment (docs/cli.md).
"""

import sys

from pipelines.jobs.orders_to_shipments import main

if __name__ == "__main__":
    sys.exit(main())
