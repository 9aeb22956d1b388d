"""spark-submit entry point of the job in pipelines/jobs/revenue_per_minute.py (see docs/cli.md)."""

import sys

from pipelines.jobs.revenue_per_minute import main

if __name__ == "__main__":
    sys.exit(main())
