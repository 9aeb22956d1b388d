"""The data contracts of the project, in one place: topic names, event fields, dead-letter headers
and reason codes, table schemas (docs/contracts.md describes them for people).

Everything else imports them from here: the Spark transforms, the confluent-kafka processor, the
generators, the command line, the jobs and the tests. This package imports nothing of the project
(only pyspark's type classes), so any part of it can depend on the contracts without pulling in
Kafka clients, sinks or sessions.
"""

from pipelines.contracts.dead_letters import (
    AVRO_REASON_CODES,
    DEAD_LETTER_HEADERS,
    HEADER_DETAIL,
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    REASON_CODES,
)
from pipelines.contracts.events import (
    ORDER_FIELDS,
    ORDERS,
    SALE_FIELDS,
    SALES,
    SHIPMENT_FIELDS,
    SHIPMENT_ID_PREFIX,
    SHIPMENT_STATUS,
    TIMESTAMP_FORMAT,
    EventSpec,
)
from pipelines.contracts.tables import (
    CUSTOMER_COUNT_COLUMNS,
    MONEY,
    MONEY_SUM,
    REVENUE_COLUMNS,
    REVENUE_PER_MINUTE_SCHEMA,
    SALES_SCHEMA,
    SALES_TABLE_SCHEMA,
)
from pipelines.contracts.topics import (
    CUSTOMER_COUNTS_TOPIC,
    DLQ_SUFFIX,
    ORDERS_TOPIC,
    REVENUE_TOPIC,
    SALES_TOPIC,
    SHIPMENTS_TOPIC,
    dead_letter_topic,
)

__all__ = [
    "AVRO_REASON_CODES",
    "CUSTOMER_COUNTS_TOPIC",
    "CUSTOMER_COUNT_COLUMNS",
    "DEAD_LETTER_HEADERS",
    "DLQ_SUFFIX",
    "HEADER_DETAIL",
    "HEADER_REASON",
    "HEADER_SOURCE_OFFSET",
    "HEADER_SOURCE_PARTITION",
    "HEADER_SOURCE_TOPIC",
    "MONEY",
    "MONEY_SUM",
    "ORDERS",
    "ORDERS_TOPIC",
    "ORDER_FIELDS",
    "REASON_CODES",
    "REVENUE_COLUMNS",
    "REVENUE_PER_MINUTE_SCHEMA",
    "REVENUE_TOPIC",
    "SALES",
    "SALES_SCHEMA",
    "SALES_TABLE_SCHEMA",
    "SALES_TOPIC",
    "SALE_FIELDS",
    "SHIPMENTS_TOPIC",
    "SHIPMENT_FIELDS",
    "SHIPMENT_ID_PREFIX",
    "SHIPMENT_STATUS",
    "TIMESTAMP_FORMAT",
    "EventSpec",
    "dead_letter_topic",
]
