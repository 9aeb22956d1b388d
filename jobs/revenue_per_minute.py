"""Revenue per category per minute from `sales`: watermarked windows into Delta and/or Kafka.

The spark-submit entry point: `spark-submit --jars "$(pipelines jars)" jobs/revenue_per_minute.py
--help`. The same job runs as `python jobs/revenue_per_minute.py` and as
`pipelines-revenue-per-minute`; the job itself (wiring, arguments and their rules) is
pipelines/jobs/revenue_per_minute.py, its command line is in docs/cli.md.
"""

import sys

from pipelines.jobs.revenue_per_minute import main

if __name__ == "__main__":
    sys.exit(main())
