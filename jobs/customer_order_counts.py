"""spark-submit entry point of the job in pipelines/jobs/customer_order_counts.py (see docs/cli.md)."""

import sys

from pipelines.jobs.customer_order_counts import main

if __name__ == "__main__":
    sys.exit(main())
