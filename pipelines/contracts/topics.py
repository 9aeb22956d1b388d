"""Topic names: the defaults of every job, command, generator and test (each can be overridden by
an argument; nothing else spells them out)."""

from __future__ import annotations

ORDERS_TOPIC = "orders"
"""Orders, keyed by `order_id`: the source of the shipments and customer-count pipelines."""
SALES_TOPIC = "sales"
"""Sales, keyed by `sale_id`: the source of the spine and the revenue pipeline."""
SHIPMENTS_TOPIC = "shipments"
"""One shipment per valid order, keyed by the order's key (Spark job or Python processor)."""
REVENUE_TOPIC = "revenue-per-minute"
"""Revenue per window and category (the revenue job's Kafka sink), keyed `<window_start>|<category>`."""
CUSTOMER_COUNTS_TOPIC = "customer-order-counts"
"""Running order count per customer, keyed by `customer_id`; meant to be a compacted topic."""

DLQ_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """`sales` -> `sales.dlq`: where the records of `topic` that cannot be processed go."""
    return topic + DLQ_SUFFIX
