"""The pipelines, one module each: its wiring (Kafka source -> pure transforms -> sinks, as
functions of a session and plain values), its run summary, and its command line (`parse_args`,
`main`), which `jobs/<name>.py` runs under spark-submit and the `pipelines-<name>` console script
runs directly.

- `sales_to_delta`: the spine, `sales` -> a Delta table of typed rows;
- `revenue_per_minute`: watermarked revenue windows into Delta and/or Kafka, with dead letters;
- `orders_to_shipments`: `orders` -> `shipments` (micro-batch or real-time mode), with dead letters;
- `customer_order_counts`: running per-customer counts in the state store, to Kafka and/or Delta.

`runner` holds what every job shares.
"""
