"""Scaling of the revenue job with the size of its backlog: 250k, 1M and 4M preloaded sales.

Each size is its own topic (3 partitions, sales 100 ms apart in event time) and one run of the job
as it ships (`bench.aggregation.run_spark`: available-now into Delta with its dead-letter query,
checked exactly against the totals of what was sent). Recorded per size: seconds and events/s,
micro-batches, the most state rows any batch held (the watermark closes windows, so the state
holds only the open ones whatever the backlog), and the driver's heap: the old generation's peak
during the run and what is still in use after a full GC once the run is done.

Time should grow linearly with the events (constant events/s), state rows and heap stay flat.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import aggregation

MIB = 1024 * 1024


class DriverHeap:
    """The driver JVM's heap through its management beans (py4j)."""

    def __init__(self, spark: Any) -> None:
        self._mf = spark._jvm.java.lang.management.ManagementFactory
        self._system = spark._jvm.java.lang.System

    def _old_gen(self) -> list[Any]:
        return [p for p in self._mf.getMemoryPoolMXBeans() if "Old Gen" in p.getName()]

    def reset_peak(self) -> None:
        for pool in self._old_gen():
            pool.resetPeakUsage()

    def old_gen_peak_mib(self) -> float:
        return sum(p.getPeakUsage().getUsed() for p in self._old_gen()) / MIB

    def retained_mib(self) -> float:
        """Heap in use after a full collection."""
        self._system.gc()
        return self._mf.getMemoryMXBean().getHeapMemoryUsage().getUsed() / MIB


def run(
    spark_factory: Callable[[], Any],
    bootstrap: str,
    *,
    sizes: tuple[int, ...],
    workdir: Path,
    log: Callable[[str], None],
    max_offsets_per_trigger: int | None,
) -> dict[str, Any]:
    spark = spark_factory()
    heap = DriverHeap(spark)
    warm_topic, warm = aggregation.preload(bootstrap, 20_000, seed=1, log=log)
    aggregation.run_spark(
        spark,
        bootstrap,
        warm_topic,
        20_000,
        warm.totals(),
        workdir,
        max_offsets_per_trigger=max_offsets_per_trigger,
    )
    results = []
    for n, size in enumerate(sizes):
        topic, totals = aggregation.preload(bootstrap, size, seed=3000 + n, log=log)
        heap.retained_mib()
        heap.reset_peak()
        r = aggregation.run_spark(
            spark,
            bootstrap,
            topic,
            size,
            totals.totals(),
            workdir,
            max_offsets_per_trigger=max_offsets_per_trigger,
        )
        r.update(events=size, old_gen_peak_mib=heap.old_gen_peak_mib(), heap_retained_mib=heap.retained_mib())
        log(
            f"scaling {size:,}: {r['rate']:,.0f} events/s in {r['seconds']:.1f} s, {r['batches']} batches, "
            f"state rows max {r['state_rows_max']:,}, old gen peak {r['old_gen_peak_mib']:.0f} MiB, "
            f"retained {r['heap_retained_mib']:.0f} MiB, correct={r['check']['ok']}"
        )
        results.append(r)
    return {"max_offsets_per_trigger": max_offsets_per_trigger, "runs": results}
