# The project's image in docker/compose.yaml: the project installed as in `make setup` (Python 3.11,
# pyspark 4.2.0 with its spark-submit and spark-class, Java 17), to run `pipelines ...` and
# `submit-job` inside the compose network, the dashboard, and the Spark workers (whose executors'
# Python then has confluent-kafka for the exactly-once Kafka sink, and the driver's Python version). The connector jars are mounted at run time from the
# host's .jars/spark (see compose.yaml), so nothing is resolved with Maven here.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/pipelines
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
COPY jobs ./jobs
COPY conf ./conf
# Editable, so the package finds conf/ and .jars/ under /opt/pipelines as it does in a clone.
RUN pip install --no-cache-dir -e .
COPY docker/submit-job.sh /usr/local/bin/submit-job
RUN chmod 0755 /usr/local/bin/submit-job
