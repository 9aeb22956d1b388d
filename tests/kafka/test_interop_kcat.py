"""An independent client reads what the project's generator wrote and sees the same records.

kcat (Debian package `kcat`) is a different program from ours, with its own consumer settings;
`.ci/run` installs it. Locally it is skipped with a hint when kcat is missing, unless
PIPELINES_REQUIRE_KCAT=1 (set by CI) makes its absence a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable

import pytest

from pipelines.generators.sales import encode_sale, generate_sales
from pipelines.kafka.producer import make_producer, produce_all


@pytest.fixture
def kcat() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        if os.environ.get("PIPELINES_REQUIRE_KCAT") == "1":
            pytest.fail("kcat is required here (PIPELINES_REQUIRE_KCAT=1): apt-get install kcat")
        pytest.skip("kcat is not installed (Debian: apt-get install kcat)")
    return path


def test_kcat_reads_the_same_keys_partitions_offsets_and_values(
    kcat: str, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=3)
    report = produce_all(
        make_producer(bootstrap), topic, [encode_sale(s) for s in generate_sales(1500, seed=5)]
    )
    assert report.acknowledged == 1500
    proc = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = {
        (r["partition"], r["offset"], r["key"].encode(), r["payload"].encode())
        for r in map(json.loads, proc.stdout.splitlines())
    }
    produced = {(d.partition, d.offset, d.key, d.value) for d in report.delivered}
    assert len(seen) == 1500
    assert seen == produced
