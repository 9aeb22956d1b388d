"""spark-submit entry point of the job in pipelines/jobs/sales_to_delta.py (see docs/cli.md)."""

import sys

from pipelines.jobs.sales_to_delta import main

if __name__ == "__main__":
    sys.exit(main())
