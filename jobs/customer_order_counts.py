"""Running order count and amount per customer from `orders`, kept in Spark's state store.

The spark-submit entry point: `spark-submit --jars "$(pipelines jars)" jobs/customer_order_counts.py
--help`. The same job runs as `python jobs/customer_order_counts.py` and as
`pipelines-customer-order-counts`; the job itself (wiring, arguments and their rules) is
pipelines/jobs/customer_order_counts.py, its command line is in docs/cli.md.
"""

import sys

from pipelines.jobs.customer_order_counts import main

if __name__ == "__main__":
    sys.exit(main())
