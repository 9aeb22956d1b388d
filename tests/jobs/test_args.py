"""The jobs' command lines: every argument rule, checked without a broker or a session (the same
parsers run under spark-submit, `python jobs/<name>.py` and the `pipelines-<name>` commands)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.config import load_settings
from pipelines.jobs import (
    customer_order_counts,
    orders_to_shipments,
    revenue_per_minute,
    runner,
    sales_to_delta,
)
from pipelines.jobs.runner import RUN_OPTIONS

BASE = ["--bootstrap-servers", "127.0.0.1:9092", "--checkpoint", "ck"]
ParseArgs = Callable[[list[str]], object]
ALL_JOBS = {
    "sales_to_delta": (sales_to_delta.parse_args, ["--delta-path", "t"]),
    "revenue_per_minute": (revenue_per_minute.parse_args, ["--delta-path", "t"]),
    "orders_to_shipments": (orders_to_shipments.parse_args, []),
    "customer_order_counts": (customer_order_counts.parse_args, []),
}


def refused(parse: ParseArgs, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The error the job prints for `argv`: one line (no usage block), exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(" (see --help)"), lines
    return lines[0]


@pytest.mark.parametrize("job", list(ALL_JOBS))
@pytest.mark.parametrize("missing", ["--bootstrap-servers", "--checkpoint"])
def test_every_job_needs_servers_and_a_checkpoint(
    job: str, missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parse, extra = ALL_JOBS[job]
    argv = [*BASE, *extra]
    i = argv.index(missing)
    del argv[i : i + 2]
    assert f"the following arguments are required: {missing}" in refused(parse, argv, capsys)


@pytest.mark.parametrize("job", list(ALL_JOBS))
def test_every_job_refuses_an_unknown_trigger(job: str, capsys: pytest.CaptureFixture[str]) -> None:
    parse, extra = ALL_JOBS[job]
    error = refused(parse, [*BASE, *extra, "--trigger", "every-5s"], capsys)
    assert "argument --trigger: unknown --trigger 'every-5s'" in error
    assert "processing-time=<N>s" in error


@pytest.mark.parametrize("job", ["sales_to_delta", "revenue_per_minute", "customer_order_counts"])
def test_only_the_stateless_kafka_job_takes_real_time_mode(
    job: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parse, extra = ALL_JOBS[job]
    error = refused(parse, [*BASE, *extra, "--trigger", "real-time"], capsys)
    assert "real-time mode runs stateless Kafka-to-Kafka queries only (orders_to_shipments)" in error


@pytest.mark.parametrize("trigger", ["real-time", "real-time=30s", "processing-time=0s", "available-now"])
def test_shipments_take_every_trigger(trigger: str) -> None:
    args = orders_to_shipments.parse_args([*BASE, "--trigger", trigger])
    assert args.trigger == trigger


@pytest.mark.parametrize("job", list(ALL_JOBS))
@pytest.mark.parametrize("value", ["0", "-5", "ten"])
def test_max_offsets_per_trigger_is_a_positive_whole_number(
    job: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parse, extra = ALL_JOBS[job]
    error = refused(parse, [*BASE, *extra, "--max-offsets-per-trigger", value], capsys)
    assert "argument --max-offsets-per-trigger:" in error


def test_defaults_of_the_spine() -> None:
    args = sales_to_delta.parse_args([*BASE, "--delta-path", "t"])
    assert (args.topic, args.trigger, args.starting_offsets) == ("sales", "available-now", "earliest")
    assert (args.delta_path, args.checkpoint, args.max_offsets_per_trigger) == (Path("t"), Path("ck"), None)
    assert (args.profile, args.verbose) == ("local", False)


def test_the_spine_needs_a_delta_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert "the following arguments are required: --delta-path" in refused(
        sales_to_delta.parse_args, BASE, capsys
    )


def test_defaults_of_the_revenue_job() -> None:
    args = revenue_per_minute.parse_args([*BASE, "--delta-path", "t"])
    assert (args.topic, args.sink, args.mode) == ("sales", "delta", "append")
    assert (args.window, args.watermark) == ("1 minute", "30 seconds")
    assert (args.output_topic, args.dlq_topic) == ("revenue-per-minute", None)
    assert args.progress_file == Path("ck.progress.jsonl")


def test_the_revenue_progress_file_sits_next_to_the_checkpoint() -> None:
    args = revenue_per_minute.parse_args(
        ["--bootstrap-servers", "b:1", "--checkpoint", "/x/ck/rev", "--delta-path", "t"]
    )
    assert args.progress_file == Path("/x/ck/rev.progress.jsonl")


@pytest.mark.parametrize("job", ["revenue_per_minute", "customer_order_counts"])
@pytest.mark.parametrize("sink", ["delta", "both"])
def test_a_delta_sink_needs_a_delta_path(job: str, sink: str, capsys: pytest.CaptureFixture[str]) -> None:
    parse, _ = ALL_JOBS[job]
    error = refused(parse, [*BASE, "--sink", sink], capsys)
    assert error.endswith("error: --delta-path is required with --sink delta or both (see --help)")


def test_the_revenue_job_writes_kafka_only_without_a_delta_path() -> None:
    args = revenue_per_minute.parse_args([*BASE, "--sink", "kafka"])
    assert (args.sink, args.delta_path) == ("kafka", None)


def test_update_mode_is_the_delta_merge_mode(capsys: pytest.CaptureFixture[str]) -> None:
    error = refused(revenue_per_minute.parse_args, [*BASE, "--sink", "kafka", "--mode", "update"], capsys)
    assert error.endswith(
        "error: --mode update is the Delta MERGE mode; the Kafka sink always sends updates (see --help)"
    )
    args = revenue_per_minute.parse_args([*BASE, "--sink", "both", "--mode", "update", "--delta-path", "t"])
    assert (args.sink, args.mode) == ("both", "update")


@pytest.mark.parametrize(("flag", "value"), [("--sink", "s3"), ("--mode", "complete")], ids=["sink", "mode"])
def test_the_revenue_job_refuses_unknown_choices(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    error = refused(revenue_per_minute.parse_args, [*BASE, "--delta-path", "t", flag, value], capsys)
    assert f"argument {flag}: invalid choice: '{value}'" in error


def test_defaults_of_the_shipments_job() -> None:
    args = orders_to_shipments.parse_args(BASE)
    assert (args.source_topic, args.sink_topic, args.dlq_topic) == ("orders", "shipments", None)
    assert args.trigger == "available-now"


def test_defaults_of_the_customer_counts_job() -> None:
    args = customer_order_counts.parse_args(BASE)
    assert (args.source_topic, args.sink, args.sink_topic) == ("orders", "kafka", "customer-order-counts")
    assert (args.delta_path, args.dlq_topic) == (None, None)


@pytest.mark.parametrize("job", list(ALL_JOBS))
def test_help_names_where_secured_clusters_take_their_credentials(
    job: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parse, _ = ALL_JOBS[job]
    with pytest.raises(SystemExit) as exit_info:
        parse(["--help"])
    assert exit_info.value.code == 0
    assert "PIPELINES_KAFKA__" in capsys.readouterr().out


START = {
    "sales_to_delta": sales_to_delta.sales_to_delta,
    "revenue_per_minute": revenue_per_minute.start_revenue_per_minute,
    "orders_to_shipments": orders_to_shipments.start_orders_to_shipments,
    "customer_order_counts": customer_order_counts.start_customer_order_counts,
}


@pytest.mark.parametrize("job", list(ALL_JOBS))
def test_every_option_reaches_the_start_function(job: str) -> None:
    """`start_from_args` passes options by name: an option the start function does not take would
    fail the job, and a parameter without an option would be unreachable from the command line."""
    parse, extra = ALL_JOBS[job]
    options = set(vars(parse([*BASE, *extra]))) - RUN_OPTIONS
    # `spark_settings` is the profile's `spark` section, which `start_from_args` passes to every job.
    parameters = set(inspect.signature(START[job]).parameters) - {"spark", "spark_settings"}
    assert "spark_settings" in inspect.signature(START[job]).parameters
    assert options <= parameters
    # Parameters only the Python API offers (make run shares orders.dlq between two jobs; an Avro
    # job's read plan is renewed by its main when a schema is registered while it runs).
    api_only = {
        "customer_order_counts": {"dead_letters", "avro_plan"},
        "revenue_per_minute": {"avro_plan"},
        "orders_to_shipments": {"avro_plan"},
    }
    assert parameters - options == api_only.get(job, set())


@pytest.mark.parametrize("job", list(ALL_JOBS))
def test_a_bad_format_in_the_environment_is_one_line_before_anything_starts(
    job: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = {
        "sales_to_delta": sales_to_delta,
        "revenue_per_minute": revenue_per_minute,
        "orders_to_shipments": orders_to_shipments,
        "customer_order_counts": customer_order_counts,
    }[job]
    monkeypatch.setenv("PIPELINES_FORMAT", "xml")
    with pytest.raises(SystemExit) as exit_info:
        module.main(BASE + ALL_JOBS[job][1])  # no broker at this address: it must not get that far
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{job}: $PIPELINES_FORMAT must be json or avro, not 'xml'"
    ]


def test_start_from_args_gives_the_start_function_the_profiles_spark_section(tmp_path: Path) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text(
        "spark:\n  kafka_consumer: {fetch.max.wait.ms: 25}\n  interpreted_projections: false\n"
    )
    settings = load_settings(profile)
    args = orders_to_shipments.parse_args([*BASE])
    got = runner.start_from_args(lambda spark, **options: options, None, args, settings)  # type: ignore[arg-type]
    assert got["spark_settings"].kafka_consumer == {"fetch.max.wait.ms": 25}
    assert got["spark_settings"].interpreted_projections is False
    assert got["max_offsets_per_trigger"] == settings.spark.max_offsets_per_trigger
