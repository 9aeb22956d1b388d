"""The spine: the `sales` topic -> parsed, typed rows -> a Delta table (exactly-once).

The spark-submit entry point: `spark-submit --jars "$(pipelines jars)" jobs/sales_to_delta.py
--help`. The same job runs as `python jobs/sales_to_delta.py` and as `pipelines-sales-to-delta`; the
job itself (wiring, arguments and their rules) is pipelines/jobs/sales_to_delta.py, its command line
is in docs/cli.md.
"""

import sys

from pipelines.jobs.sales_to_delta import main

if __name__ == "__main__":
    sys.exit(main())
