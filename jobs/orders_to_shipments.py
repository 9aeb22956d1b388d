"""spark-submit entry point of the job in pipelines/jobs/orders_to_shipments.py (see docs/cli.md)."""

import sys

from pipelines.jobs.orders_to_shipments import main

if __name__ == "__main__":
    sys.exit(main())
