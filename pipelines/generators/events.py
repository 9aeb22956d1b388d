"""The streams `pipelines generate` sends: seeded valid events mixed with late and malformed ones.

Every event has a kind:

- `valid`: an event of the contract, at most `disorder` (0.5 s) behind the latest valid event
  before it.
- `late`: a contract-valid event whose timestamp is far behind the stream: `late_by_s` (default
  300 s, five minutes: far behind any watermark the jobs use) plus up to 1 s of jitter behind the
  latest timestamp of the valid events sent before it (the stream's event time; the start time when
  there is none yet). The exact distance is `late_by_ms`.
- `malformed`: broken the way real topics break, with the reason code a parser should assign.

Reason codes (the dead-letter `error.reason` of `pipelines.contracts.REASON_CODES`), each event
with exactly one defect:

- `empty_value`: the value is zero bytes (not a null tombstone).
- `invalid_utf8`: the value does not decode as UTF-8: cp1252 text (`"currency":"€"` with the euro
  as byte 0x80), or the Confluent Avro wire format (magic byte 0, a schema id, binary data).
- `invalid_json`: UTF-8, but `json.loads` fails: truncated JSON, a CSV line, or a Python dict's
  repr with single quotes.
- `missing_field:<field>`: a JSON object without that field (any field of the contract).
- `bad_type:<field>`: the field has the wrong JSON type: the amount as a string (`"12.30"`), or a
  string field as a number (an id as its digits, currency 978, the timestamp as epoch millis).
- `negative_amount`: the amount is below zero.
- `bad_timestamp`: the timestamp is a string but not the contract's: `2026-11-27 10:00:00`,
  `27/11/2026 10:00:00`, month 13, `N/A` or the empty string.

Each malformed event has exactly one defect (no field is ever null, no amount zero), so a parser
that checks the encoding before the JSON and a field's JSON type before its content finds the
reason above, whatever order it checks the fields in. Spark's `from_json` is lenient where the
contract is not: by default it accepts single quotes (`allowSingleQuotes`), reads a string like
`"12.30"` into a DECIMAL field and a number into a STRING field, so a parser built on it must check
JSON types itself to find `invalid_json` and `bad_type:<field>`.

Determinism: the same event type, seed and arguments give the same events, byte for byte and in
the same order, including which ones are late or malformed and how (for one Python minor version,
whose `random` algorithms are fixed). Exactly `round(count * fraction)` events are late and exactly
as many malformed as their fraction says, spread uniformly over the stream. The valid events do
not depend on the fractions: event `seq` of a run with faults is event `seq` of the clean run
unless it was made late or malformed. Event time runs in UTC from the start (a start in another
time zone is taken as its UTC instant).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from pipelines.contracts import ORDER_FIELDS, SALE_FIELDS
from pipelines.generators.common import DEFAULT_START, dump_json, format_timestamp
from pipelines.generators.orders import order_document, order_draws, order_from_draw, order_json
from pipelines.generators.sales import sale_document, sale_draws, sale_from_draw, sale_json

EventKind = Literal["valid", "late", "malformed"]
EventType = Literal["orders", "sales"]
EVENT_TYPES: tuple[EventType, ...] = ("orders", "sales")

DISORDER_MS = 500
"""How far behind the stream a valid event may be (the generators' `disorder_ms`)."""
DEFAULT_LATE_BY_S = 300.0
"""Late events are five minutes (plus jitter) behind by default: far beyond any watermark delay the
jobs use (seconds to a minute), so a windowed job must drop or dead-letter them."""
LATE_JITTER_MS = 1000

MALFORMED_MIX: tuple[tuple[str, int], ...] = (
    ("invalid_json", 20),
    ("missing_field", 20),
    ("bad_type", 15),
    ("negative_amount", 15),
    ("bad_timestamp", 15),
    ("invalid_utf8", 10),
    ("empty_value", 5),
)
"""(reason family, weight) of malformed events; `missing_field` and `bad_type` add `:<field>`."""

REASON_FAMILIES = tuple(name for name, _ in MALFORMED_MIX)

AVRO_MALFORMED_MIX: tuple[tuple[str, int], ...] = (
    ("avro_truncated", 20),
    ("avro_bad_magic_byte", 20),
    ("avro_unknown_schema_id", 20),
    ("avro_unreadable_schema", 15),
    ("negative_amount", 15),
    ("empty_value", 10),
)
"""(reason, weight) of malformed events written in Avro (`pipelines.contracts.AVRO_REASON_CODES`):

- `avro_truncated`: a good value cut short, anywhere from inside the 5-byte header to its last byte;
- `avro_bad_magic_byte`: the event's JSON text on the Avro topic (it starts with `{`), or a good
  value whose first byte is 1;
- `avro_unknown_schema_id`: a good payload behind an id no registry assigns (0, or a negative id);
- `avro_unreadable_schema`: the event written with a registered schema the topic's readers cannot
  read (another event type's contract schema, under its own subject);
- `negative_amount`, `empty_value`: as in JSON."""


@dataclass(frozen=True)
class AvroWriters:
    """How events are written with `--format avro`: `encode(document)` gives the wire-format bytes
    of a document (the JSON object before encoding) with the topic's registered schema,
    `foreign(document)` bytes under a registered schema the topic's readers cannot read."""

    encode: Callable[[dict[str, object]], bytes]
    foreign: Callable[[dict[str, object]], bytes]


class GeneratedEvent(NamedTuple):
    """One event as it goes on the topic, with what it is meant to be (a NamedTuple: made millions
    of times, and a frozen dataclass's constructor cost a tenth of the generator's time)."""

    seq: int
    """Its position in the stream, from 0."""
    key: bytes
    value: bytes
    kind: EventKind = "valid"
    reason: str | None = None
    """For `malformed` events: the reason code a parser should assign."""
    late_by_ms: int | None = None
    """For `late` events: how far behind the stream's event time its timestamp is."""
    event_us: int | None = None
    """For `valid` events: the event time in microseconds since the Unix epoch (see `event_time`;
    until 2026-12 the tuple held the datetime itself, as its last field `event_time`)."""

    @property
    def event_time(self) -> datetime | None:
        """For `valid` events: the event time, UTC (what `--heartbeat` follows, whatever the
        format). Made when asked for: the generator's hot path keeps it as a number."""
        return None if self.event_us is None else _EPOCH + timedelta(microseconds=self.event_us)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class _Shape:
    """How `_stream` makes one event type's events: its seeded draws (a tuple per event, the first
    item the event time in milliseconds after the start), the event of a draw as the contract's JSON
    object (for the faulty and Avro events), and its (key, value) written straight as JSON bytes
    (the valid JSON events: `pipelines generate`'s hot path, the same bytes as `dump_json`)."""

    fields: tuple[str, ...]
    key_field: str
    draws: Callable[[int, int], Iterator[tuple[Any, ...]]]
    document: Callable[[int, int, Any, datetime], dict[str, object]]
    json: Callable[[int, int, Any, bytes], tuple[bytes, bytes]]
    whole_ms_start: bool
    """Whether event times count from the start cut to the millisecond (sales) or from the start
    itself (orders): as the generators always did."""


def _order_document(seed: int, n: int, draw: Any, event_time: datetime) -> dict[str, object]:
    return order_document(order_from_draw(seed, n, draw, event_time))


def _sale_document(seed: int, n: int, draw: Any, event_time: datetime) -> dict[str, object]:
    return sale_document(sale_from_draw(seed, n, draw, event_time))


_SHAPES: dict[str, _Shape] = {
    "orders": _Shape(
        ORDER_FIELDS,
        "order_id",
        lambda count, seed: order_draws(count, seed=seed, disorder_ms=DISORDER_MS),
        _order_document,
        order_json,
        whole_ms_start=False,
    ),
    "sales": _Shape(
        SALE_FIELDS,
        "sale_id",
        lambda count, seed: sale_draws(count, seed=seed, disorder_ms=DISORDER_MS),
        _sale_document,
        sale_json,
        whole_ms_start=True,
    ),
}


def event_fields(event_type: str) -> tuple[str, ...]:
    """The contract's fields of an event type's value, in the order they are written."""
    return _shape(event_type).fields


def _shape(event_type: str) -> _Shape:
    try:
        return _SHAPES[event_type]
    except KeyError:
        raise ValueError(f"unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}") from None


def fault_counts(count: int, late_fraction: float, malformed_fraction: float) -> tuple[int, int]:
    """(late, malformed): how many events of `count` the fractions make, rounded to the nearest
    whole number (malformed first; late events get what is left if rounding overshoots)."""
    for name, fraction in (("late fraction", late_fraction), ("malformed fraction", malformed_fraction)):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"the {name} must be between 0 and 1, not {fraction}")
    if late_fraction + malformed_fraction > 1.0:
        raise ValueError(
            f"the late and malformed fractions add up to {late_fraction + malformed_fraction:g}, more than 1"
        )
    malformed = round(count * malformed_fraction)
    return min(round(count * late_fraction), count - malformed), malformed


def generate_events(
    event_type: str,
    count: int,
    *,
    seed: int = 42,
    late_fraction: float = 0.0,
    malformed_fraction: float = 0.0,
    late_by_s: float = DEFAULT_LATE_BY_S,
    start: datetime = DEFAULT_START,
    avro: AvroWriters | None = None,
) -> Iterator[GeneratedEvent]:
    """Yield `count` events of `event_type` ("orders" or "sales"): valid ones, and the late and
    malformed ones the fractions ask for, in a reproducible order (see the module docstring).
    With `avro`, values are Avro in the Confluent wire format and the malformed ones are of
    AVRO_MALFORMED_MIX; the valid events are the same events as in JSON (the late ones are not:
    their timestamps differ).

    `start` must say its time zone; event time runs in UTC from it (a start in another zone is
    the same instant in UTC, and the stream is the one of that UTC start).

    Raises ValueError at once (not at the first event) for an unknown type, a negative count,
    fractions outside 0..1 or adding up to more than 1, a lateness not beyond the normal disorder,
    or a start without a time zone.
    """
    shape = _shape(event_type)
    if start.utcoffset() is None:
        raise ValueError(f"the start must say its time zone (UTC: {DEFAULT_START.isoformat()}), not {start}")
    start = start.astimezone(UTC)
    if count < 0:
        raise ValueError(f"the count must not be negative, not {count}")
    late_left, malformed_left = fault_counts(count, late_fraction, malformed_fraction)
    late_by_ms = round(late_by_s * 1000)
    if late_by_ms <= DISORDER_MS:
        raise ValueError(
            f"late events must be more than the normal disorder ({DISORDER_MS / 1000:g} s) behind, "
            f"not {late_by_s:g} s"
        )
    return _stream(shape, event_type, count, seed, start, late_left, malformed_left, late_by_ms, avro)


def _stream(
    shape: _Shape,
    event_type: str,
    count: int,
    seed: int,
    start: datetime,
    late_left: int,
    malformed_left: int,
    late_by_ms: int,
    avro: AvroWriters | None = None,
) -> Iterator[GeneratedEvent]:
    # Separate streams of randomness: which events are faulty, and how, never shifts the valid ones.
    roles = random.Random(f"roles-{event_type}-{seed}")
    faults = random.Random(f"faults-{event_type}-{seed}")
    mix = AVRO_MALFORMED_MIX if avro is not None else MALFORMED_MIX
    families = [name for name, _ in mix]
    weights = [w for _, w in mix]
    encode = avro.encode if avro is not None else dump_json
    # Event times as whole microseconds since the epoch: a datetime is made only for the faulty and
    # Avro events, and the timestamp text of a valid JSON event from a per-second prefix.
    start_us = (start - _EPOCH) // _ONE_US
    base_us = start_us // 1000 * 1000 if shape.whole_ms_start else start_us
    stream_us = start_us  # the latest event time of the valid events sent so far
    prefixes: dict[int, bytes] = {}
    document, json, random_role = shape.document, shape.json, roles.random
    for seq, draw in enumerate(shape.draws(count, seed)):
        event_us = base_us + draw[0] * 1000
        # Selection sampling: each event is malformed or late with probability (left / remaining),
        # which gives exactly the asked-for numbers, spread uniformly over the stream.
        role = random_role() * (count - seq)
        if role >= malformed_left + late_left:  # valid
            if event_us > stream_us:
                stream_us = event_us
            if avro is not None:
                doc = document(seed, seq, draw, _EPOCH + timedelta(microseconds=event_us))
                key, value = str(doc[shape.key_field]).encode(), avro.encode(doc)
            else:
                second, us = divmod(event_us, 1_000_000)
                prefix = prefixes.get(second)
                if prefix is None:
                    if len(prefixes) > 64:  # event times move forward: forget the old seconds
                        prefixes.clear()
                    text = format_timestamp(_EPOCH + timedelta(seconds=second))
                    prefix = prefixes[second] = text[:-5].encode() + b".%03dZ"  # without ".mmmZ"
                key, value = json(seed, seq, draw, prefix % (us // 1000))
            yield GeneratedEvent(seq, key, value, "valid", None, None, event_us)
            continue
        event_time = _EPOCH + timedelta(microseconds=event_us)
        doc = document(seed, seq, draw, event_time)
        key = str(doc[shape.key_field]).encode()
        if role < malformed_left:
            malformed_left -= 1
            family = faults.choices(families, weights)[0]
            if avro is not None:
                value, reason = _malform_avro(family, doc, avro, faults)
            else:
                value, reason = _malform(family, doc, event_time, shape, faults)
            yield GeneratedEvent(seq, key, value, "malformed", reason=reason)
        else:
            late_left -= 1
            behind = late_by_ms + faults.randrange(LATE_JITTER_MS)
            late_time = _EPOCH + timedelta(microseconds=stream_us - behind * 1000)
            doc["timestamp"] = format_timestamp(late_time)
            yield GeneratedEvent(seq, key, encode(doc), "late", late_by_ms=behind)


def _malform(
    family: str, document: dict[str, object], event_time: datetime, shape: _Shape, rng: random.Random
) -> tuple[bytes, str]:
    """The value of one malformed event of `family`, and its reason code."""
    if family == "empty_value":
        return b"", "empty_value"
    if family == "invalid_utf8":
        if rng.random() < 0.5:
            # A producer on Windows-1252: the euro sign is byte 0x80, never valid on its own in UTF-8.
            document["currency"] = "€"
            return dump_json(document).decode().encode("cp1252"), "invalid_utf8"
        # Someone wrote Avro to a JSON topic: magic byte 0, a 4-byte schema id, then binary data;
        # 0xFF never occurs in UTF-8.
        payload = bytearray(rng.randbytes(24))
        payload[rng.randrange(len(payload))] = 0xFF
        return b"\x00" + struct.pack(">I", rng.randint(1, 500)) + bytes(payload), "invalid_utf8"
    if family == "invalid_json":
        text = dump_json(document).decode()
        variant = rng.randrange(3)
        if variant == 0:  # cut off mid-write: a proper prefix of an object never closes it
            return text[: rng.randint(1, len(text) - 1)].encode(), "invalid_json"
        if variant == 1:  # a CSV line on a JSON topic
            return ",".join(_plain(v) for v in document.values()).encode(), "invalid_json"
        # str(dict) instead of json.dumps: single quotes
        items = ", ".join(f"'{name}': {_python_literal(v)}" for name, v in document.items())
        return ("{" + items + "}").encode(), "invalid_json"
    if family == "missing_field":
        field = rng.choice(shape.fields)
        del document[field]
        return dump_json(document), f"missing_field:{field}"
    if family == "bad_type":
        field = rng.choice(shape.fields)
        document[field] = _wrong_type(field, document[field], event_time, rng)
        return dump_json(document), f"bad_type:{field}"
    if family == "negative_amount":
        amount = document["amount"]
        assert isinstance(amount, Decimal)
        document["amount"] = -amount
        return dump_json(document), "negative_amount"
    if family == "bad_timestamp":
        month_13 = format_timestamp(event_time)[:5] + "13" + format_timestamp(event_time)[7:]
        document["timestamp"] = rng.choice(
            [
                event_time.strftime("%Y-%m-%d %H:%M:%S"),
                event_time.strftime("%d/%m/%Y %H:%M:%S"),
                month_13,
                "N/A",
                "",
            ]
        )
        return dump_json(document), "bad_timestamp"
    raise ValueError(f"unknown malformed family {family!r}")


def _malform_avro(
    family: str, document: dict[str, object], avro: AvroWriters, rng: random.Random
) -> tuple[bytes, str]:
    """The value of one malformed event of `family` written in Avro, and its reason code."""
    if family == "empty_value":
        return b"", "empty_value"
    if family == "negative_amount":
        amount = document["amount"]
        assert isinstance(amount, Decimal)
        document["amount"] = -amount
        return avro.encode(document), "negative_amount"
    if family == "avro_unreadable_schema":
        return avro.foreign(document), "avro_unreadable_schema"
    good = avro.encode(document)
    if family == "avro_truncated":
        return good[: rng.randint(1, len(good) - 1)], "avro_truncated"
    if family == "avro_bad_magic_byte":
        if rng.random() < 0.5:
            return dump_json(document), "avro_bad_magic_byte"  # JSON on an Avro topic
        return b"\x01" + good[1:], "avro_bad_magic_byte"
    if family == "avro_unknown_schema_id":
        unknown = rng.choice([0, -rng.randint(1, 2**31)])
        return good[:1] + struct.pack(">i", unknown) + good[5:], "avro_unknown_schema_id"
    raise ValueError(f"unknown malformed family {family!r}")


def _wrong_type(field: str, value: object, event_time: datetime, rng: random.Random) -> object:
    """A value of the wrong JSON type for `field`, the kind real producers send."""
    if isinstance(value, Decimal):
        return f"{value:.2f}"  # a number sent as a string
    if field == "timestamp":
        return int(event_time.timestamp() * 1000)  # epoch millis instead of ISO-8601 text
    if field == "currency":
        return 978  # the ISO 4217 numeric code of EUR
    digits = "".join(c for c in str(value) if c.isdigit())
    return int(digits) if digits else rng.randint(1, 99)  # an id or a code as a bare number


def _plain(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, Decimal) else str(value)


def _python_literal(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, Decimal) else repr(value)
