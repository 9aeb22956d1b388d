"""The session factory: Kafka source and Delta on the classpath, UTC, loopback, no downloads."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DecimalType, StringType, StructField, StructType, TimestampType

from pipelines.errors import PipelinesError
from pipelines.kafka.producer import make_producer, produce_all
from pipelines.sources import read_kafka_stream
from pipelines.spark import (
    INTERPRETED,
    explain_analysis_error,
    job_error,
    launched_by_spark_submit,
    query_conf,
    session_conf,
    spark_failure,
    worker_python,
)
from tests.helpers import read_kafka_batch

FACTORY, WHOLE_STAGE = "spark.sql.codegen.factoryMode", "spark.sql.codegen.wholeStage"


def test_session_conf_for_a_local_run() -> None:
    conf = session_conf(master="local[2]", jars=[Path("/j/a.jar"), Path("/j/b.jar")], shuffle_partitions=2)
    assert conf["spark.jars"] == "/j/a.jar,/j/b.jar"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.shuffle.partitions"] == "2"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert "spark.jars.packages" not in conf


def test_java_options_follow_the_log_options_of_driver_and_executors() -> None:
    conf = session_conf(
        master="local[2]", jars=None, log4j_config=Path("/c/log4j2.properties"), java_options=["-Xss4m"]
    )
    for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
        assert conf[key] == "-Dlog4j2.configurationFile=file:/c/log4j2.properties -Xss4m"
    bare = session_conf(master="local[2]", jars=None, java_options=["-Xss4m"])
    assert bare["spark.driver.extraJavaOptions"] == "-Xss4m"


def test_demo_batches_carry_the_run_in_three_with_the_heartbeats_in_the_last() -> None:
    from pipelines.demo import demo_batch_size

    assert demo_batch_size(5000, 3) == 1668  # 3 x 1,668 = 5,004 >= 5,000 sales + 3 heartbeats
    assert demo_batch_size(600, 3) == 500


def test_session_conf_under_spark_submit_leaves_jars_and_master_alone() -> None:
    conf = session_conf(master=None, jars=None)
    assert "spark.jars" not in conf and "spark.master" not in conf


def test_spark_submit_is_detected_from_the_gateway_it_hands_over() -> None:
    assert launched_by_spark_submit({"PYSPARK_GATEWAY_PORT": "4242"})
    assert not launched_by_spark_submit({})


def test_missing_connector_error_says_what_to_do() -> None:
    msg = explain_analysis_error(Exception("[DATA_SOURCE_NOT_FOUND] Failed to find the data source: kafka."))
    assert 'spark-submit --jars "$(pipelines jars)"' in msg


def test_a_failure_names_the_component_and_its_log_file() -> None:
    exc = Exception("[STREAM_FAILED] Query revenue terminated with exception: boom\n\tat org.apache...")
    msg = spark_failure("Spark", exc, Path("/w/.pipelines/logs/spark.log"))
    assert msg == (
        "Spark failed: [STREAM_FAILED] Query revenue terminated with exception: boom; "
        "the full error and Spark's log are in /w/.pipelines/logs/spark.log"
    )


def test_a_job_error_is_one_line_naming_the_log_with_a_status_per_kind() -> None:
    from pyspark.errors import AnalysisException, StreamingQueryException

    log = Path("/w/.pipelines/logs/spark.log")
    failed = StreamingQueryException(
        message="[STREAM_FAILED] Query q terminated with exception: boom\n\tat x"
    )
    assert job_error("revenue_per_minute", failed, log) == (
        "revenue_per_minute: a query failed: [STREAM_FAILED] Query q terminated with exception: boom "
        "(the full error and Spark's log: /w/.pipelines/logs/spark.log)",
        3,
    )
    missing = AnalysisException(message="[DATA_SOURCE_NOT_FOUND] Failed to find the data source: kafka.")
    message, status = job_error("sales_to_delta", missing, None)
    assert status == 2 and 'spark-submit --jars "$(pipelines jars)"' in message
    assert message.endswith("(the full error: the driver's log)")
    assert job_error("x", PipelinesError("--trigger nonsense is not a trigger"), log) == (
        "x: --trigger nonsense is not a trigger",
        2,
    )


def test_verbose_shows_sparks_info_log_on_the_terminal(tmp_path: Path) -> None:
    quiet = session_conf(master="local[1]", jars=None, log4j_config=Path("conf/log4j2.properties"))
    loud = session_conf(
        master="local[1]", jars=None, log4j_config=Path("conf/log4j2.properties"), verbose=True
    )
    assert "pipelines.console.level" not in quiet["spark.driver.extraJavaOptions"]
    assert "-Dpipelines.console.level=info" in loud["spark.driver.extraJavaOptions"]


def test_running_session_is_utc_with_delta(spark: SparkSession) -> None:
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
    assert spark.conf.get("spark.jars.packages", None) in (None, "")


def test_streaming_checkpoints_go_through_the_file_system_based_manager(
    spark: SparkSession, tmp_path: Path
) -> None:
    # The manager Spark makes for a query's checkpoint, from the session's Hadoop configuration
    # as a query gets it: FileContext's forks `readlink` and `chmod` per file (docs/architecture.md).
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hadoop_conf = spark._jsparkSession.sessionState().newHadoopConf()
    manager = jvm.org.apache.spark.sql.execution.streaming.checkpointing.CheckpointFileManager.create(
        jvm.org.apache.hadoop.fs.Path(str(tmp_path)), hadoop_conf
    )
    assert manager.getClass().getSimpleName() == "FileSystemBasedCheckpointFileManager"


def test_a_query_started_in_query_conf_keeps_those_settings_and_the_session_gets_its_own_back(
    spark: SparkSession, tmp_path: Path
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "part.json").write_text('{"n": 1}\n{"n": 2}\n')
    seen: list[tuple[str | None, str | None, str, list[int]]] = []

    def batch(df: DataFrame, _batch_id: int) -> None:
        out = df.selectExpr("n + 1 AS m")
        conf = df.sparkSession.conf
        plan = out._jdf.queryExecution().executedPlan().toString()
        seen.append((conf.get(FACTORY), conf.get(WHOLE_STAGE), plan, sorted(r.m for r in out.collect())))

    before = (spark.conf.get(FACTORY), spark.conf.get(WHOLE_STAGE))
    stream = spark.readStream.schema("n INT").json(str(source))
    with query_conf(spark, INTERPRETED):
        query = (
            stream.writeStream.foreachBatch(batch)
            .option("checkpointLocation", str(tmp_path / "checkpoint"))
            .trigger(availableNow=True)
            .start()
        )
    assert (spark.conf.get(FACTORY), spark.conf.get(WHOLE_STAGE)) == before == ("FALLBACK", "true")
    query.awaitTermination(120)
    assert [(f, w, m) for f, w, _plan, m in seen] == [("NO_CODEGEN", "false", [2, 3])]
    assert not re.search(r"\*\(\d+\) ", seen[0][2])  # no whole-stage code: `*(1) Project` in a plan


def test_the_kafka_source_gets_the_profiles_consumer_properties(spark: SparkSession) -> None:
    def options(**consumer: Any) -> str:
        df = read_kafka_stream(spark, bootstrap_servers="127.0.0.1:9", topic="t", **consumer)
        return str(df._jdf.queryExecution().analyzed().simpleString(100))  # with the source's options

    assert "kafka.fetch.max.wait.ms=10" in options()  # the profile default (SparkSettings)
    assert "kafka.fetch.max.wait.ms=250" in options(consumer={"fetch.max.wait.ms": 250})
    assert "fetch.max.wait.ms" not in options(consumer={})


def test_delta_round_trip(spark: SparkSession, tmp_path: Path) -> None:
    schema = StructType(
        [
            StructField("category", StringType()),
            StructField("revenue", DecimalType(18, 2)),
            StructField("at", TimestampType()),
        ]
    )
    rows = [
        ("books", Decimal("10.01"), datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        ("toys", Decimal("99999999.99"), datetime(2026, 11, 27, 23, 59, 59, 999000, tzinfo=UTC)),
        (None, None, None),
    ]
    df = spark.createDataFrame(rows, schema)
    df.write.format("delta").save(str(tmp_path / "t"))
    back = spark.read.format("delta").load(str(tmp_path / "t"))
    assert_df_equality(back, df, ignore_row_order=True, ignore_nullable=True)
    assert (tmp_path / "t" / "_delta_log" / "00000000000000000000.json").is_file()


def test_kafka_source_reads_the_real_broker(
    spark: SparkSession, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=2)
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    report = produce_all(make_producer(bootstrap), topic, records)
    expected = sorted((d.key, d.value, d.partition, d.offset) for d in report.delivered)
    df = read_kafka_batch(spark, bootstrap, topic)
    got = sorted((bytes(r.key), bytes(r.value), r.partition, r.offset) for r in df.collect())
    assert got == expected


def test_python_workers_run_the_drivers_interpreter_on_this_machine() -> None:
    assert worker_python("local[2]", {}) == sys.executable
    assert worker_python("spark://127.0.0.1:7077", {}) == sys.executable
    assert worker_python("spark://10.0.0.1:7077", {}) is None  # a cluster: PYSPARK_PYTHON says
    assert worker_python(None, {}) is None  # spark-submit chose
    assert worker_python("local[2]", {"PYSPARK_PYTHON": "/opt/env/bin/python"}) is None
