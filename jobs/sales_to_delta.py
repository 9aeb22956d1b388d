"""The spine: the `sales` topic -> parsed, typed rows -> a Delta table.

    spark-submit --jars "$(pipelines jars)" jobs/sales_to_delta.py \\
      --bootstrap-servers 127.0.0.1:9092 --topic sales \\
      --delta-path .pipelines/data/sales --checkpoint .pipelines/checkpoints/sales_to_delta \\
      [--trigger available-now|processing-time=5s]

Also runs as `python jobs/sales_to_delta.py ...`, in which case the project's resolved jars are
put on the session. Records that do not parse are not written (they are counted in the summary
line this job prints as JSON); routing them to `sales.dlq` comes with the revenue job.

Same arguments under `python jobs/sales_to_delta.py` and as the `pipelines-sales-to-delta`
command. The job itself (wiring, arguments and their rules) is `pipelines/jobs/sales_to_delta.py`; secured
clusters take their credentials from the environment (docs/cli.md).
"""

import sys

from pipelines.jobs.sales_to_delta import main

if __name__ == "__main__":
    sys.exit(main())
