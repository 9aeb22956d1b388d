"""A stateful table done the Spark way: running order count and amount per customer from `orders`.

    spark-submit --jars "$(pipelines jars)" jobs/customer_order_counts.py \\
      --bootstrap-servers HOST:PORT --source-topic orders --checkpoint DIR \\
      [--sink kafka|delta|both] [--sink-topic customer-order-counts] [--delta-path DIR] \\
      [--trigger available-now|processing-time=5s]

Update mode: every batch emits the customers whose counts changed, to a compacted Kafka topic
keyed by `customer_id` and/or by MERGE into a Delta table. The counts live in the query's RocksDB
state store (changelog checkpointing) and survive restarts on the same checkpoint. Orders that do
not parse go to `<source-topic>.dlq` with the reason.

Same arguments under `python jobs/customer_order_counts.py` and as the `pipelines-customer-order-counts`
command. The job itself (wiring, arguments and their rules) is `pipelines/jobs/customer_order_counts.py`; secured
clusters take their credentials from the environment (docs/cli.md).
"""

import sys

from pipelines.jobs.customer_order_counts import main

if __name__ == "__main__":
    sys.exit(main())
