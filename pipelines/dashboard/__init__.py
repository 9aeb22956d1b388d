"""`pipelines dashboard`: a live web page (Streamlit) and Prometheus `/metrics` over what the jobs
write: the Delta table, the revenue updates topic, the checkpoints, the progress files and the
dead-letter topics.

- `snapshot.py`: what the page and `/metrics` show, computed from plain values (no I/O);
- `sources.py`: reads them (Delta with delta-rs, Kafka with confluent-kafka, files) into a Snapshot;
- `app.py`: the Streamlit page;
- `pipelines/metrics.py`: the Prometheus exposition of a Snapshot.

Nothing here starts Spark: the dashboard reads what the jobs left on disk and in Kafka, so it works
beside running jobs (another process, another machine with the same files) and after they stopped.
"""
