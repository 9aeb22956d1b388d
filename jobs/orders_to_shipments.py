"""Orders become shipments: `orders` -> `shipments`, malformed orders to a dead-letter topic.

The spark-submit entry point: `spark-submit --jars "$(pipelines jars)" jobs/orders_to_shipments.py
--help`. The same job runs as `python jobs/orders_to_shipments.py` and as
`pipelines-orders-to-shipments`; the job itself (wiring, arguments and their rules) is
pipelines/jobs/orders_to_shipments.py, its command line is in docs/cli.md.
"""

import sys

from pipelines.jobs.orders_to_shipments import main

if __name__ == "__main__":
    sys.exit(main())
