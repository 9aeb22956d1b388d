"""Revenue per category per minute from the `sales` topic: watermarked tumbling windows into Delta
(exactly-once) and/or Kafka, with dead letters and late-data accounting.

    spark-submit --jars "$(pipelines jars)" jobs/revenue_per_minute.py \\
      --bootstrap-servers HOST:PORT --topic sales \\
      --delta-path .pipelines/data/revenue_per_minute \\
      --checkpoint .pipelines/checkpoints/revenue_per_minute \\
      [--trigger available-now|processing-time=5s] [--watermark "30 seconds"] [--window "1 minute"] \\
      [--sink delta|kafka|both] [--mode append|update]

Records that do not parse go to `<topic>.dlq` with the original bytes and the reason; the job never
stops on bad input. Every batch's progress (rows in, rows dropped as late, watermark) is appended
to a JSON-lines progress file; an available-now run ends with one JSON line that accounts for
every record read: read = aggregated + late + dead_lettered + heartbeats + still_open.

Same arguments under `python jobs/revenue_per_minute.py` and as the `pipelines-revenue-per-minute`
command. The job itself (wiring, arguments and their rules) is `pipelines/jobs/revenue_per_minute.py`; secured
clusters take their credentials from the environment (docs/cli.md).
"""

import sys

from pipelines.jobs.revenue_per_minute import main

if __name__ == "__main__":
    sys.exit(main())
