"""Differential fuzzing of the two parsers of the `orders` contract: the Spark parser
(pipelines.transforms.parsing, on its fast path and on its VARIANT path) and the Python
processor's (pipelines.processor.shipments) give every record the same verdict: the same reason
code for a bad record, the same values for a good one (order_id, customer_id, amount, currency and
the instant of its timestamp).

Hypothesis builds the records: orders as the contract describes them, and mutations of them — every
reason code, Unicode and escapes, huge, tiny, negative and exponent-notation numbers, duplicate and
escaped field names, nesting around the 1,000-level limit, byte-order marks, odd whitespace,
NaN/Infinity, invalid UTF-8, text after the object, numbers and field names at the JSON limits,
values of about 1 MB. An example is a list of two to three hundred records (each drawn order as
drawn and mutated), parsed by Python and in one Spark DataFrame, each record also with a line break
after it (which sends it down Spark's VARIANT path). The run is derandomized and keeps no example
database, so CI checks the same records every time; a disagreement found is kept below as a
regression case, with the verdict the contract gives it (docs/contracts.md, "Where the two parsers
differ").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipelines.contracts import ORDER_FIELDS, ORDERS, REASON_CODES
from pipelines.contracts.events import TIMESTAMP_PATTERN
from pipelines.processor import shipments
from pipelines.processor.shipments import RejectedOrder, parse_order
from pipelines.transforms.parsing import parse_events
from tests.helpers import kafka_batch

Values = tuple[str, str, str, str, int]
"""order_id, customer_id, amount (its text: 12.30), currency, event time in microseconds since 1970."""
Verdict = tuple[str | None, Values | None]
"""(reason code, None) for a bad record, (None, its values) for a good one."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_INSTANT = datetime(1, 1, 1, tzinfo=UTC)
LAST_MILLISECOND = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - FIRST_INSTANT) // timedelta(
    milliseconds=1
)


def python_verdict(value: bytes | None) -> Verdict:
    try:
        order = parse_order(value)
    except RejectedOrder as rejected:
        assert rejected.detail  # every rejection also says why in words
        return rejected.reason, None
    instant = datetime.strptime(order.timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    micros = (instant - EPOCH) // timedelta(microseconds=1)
    return None, (order.order_id, order.customer_id, str(order.amount), order.currency, micros)


def spark_verdicts(spark: SparkSession, values: Sequence[bytes | None]) -> list[Verdict]:
    """The Spark parser's verdicts, as the jobs parse (with the fast path)."""
    kafka = kafka_batch(spark, "orders", [(b"k", v) for v in values])
    table = parse_events(kafka, ORDERS).select(
        "offset",
        "error_reason",
        "error_detail",
        "order_id",
        "customer_id",
        F.col("amount").cast("string").alias("amount"),
        "currency",
        # Collected as a number: Python cannot hold year 0000, which a lax parser would let through.
        F.unix_micros("event_time").alias("micros"),
    )
    verdicts: list[Verdict] = [(None, None)] * len(values)
    for row in table.collect():
        if row["error_reason"] is not None:
            assert row["error_detail"]  # the dead letter's error.detail
            verdicts[row["offset"]] = (row["error_reason"], None)
        else:
            read = (row["order_id"], row["customer_id"], row["amount"], row["currency"], row["micros"])
            verdicts[row["offset"]] = (None, read)
    return verdicts


def preview(value: bytes | None) -> str:
    return repr(value) if value is None or len(value) <= 300 else f"{value[:200]!r}... ({len(value)} bytes)"


def disagreements(spark: SparkSession, values: Sequence[bytes | None]) -> list[str]:
    """Every record on which the parsers disagree, as one line each.

    Each value is also parsed with a line break after it: JSON allows whitespace there, so the
    verdict is the same, but the text is no longer in the canonical shape and Spark reads it on
    its VARIANT path. So Spark's fast path and its VARIANT path are each compared with Python on
    every record.
    """
    with_break = [v + b"\n" if v else v for v in values]
    by_spark = spark_verdicts(spark, [*values, *with_break])
    found = []
    for i, value in enumerate(values):
        python = python_verdict(value)
        python_with_break = python_verdict(with_break[i])
        spark_as_sent, spark_with_break = by_spark[i], by_spark[len(values) + i]
        if not python == python_with_break == spark_as_sent == spark_with_break:
            found.append(
                f"{preview(value)}: python {python} ({python_with_break} with a line break after it), "
                f"spark {spark_as_sent} ({spark_with_break})"
            )
    return found


# -- the JSON text of orders ---------------------------------------------------------------------------
def escaped(text: str, upper: bool = False) -> str:
    """`text` as a JSON string with every character written as a \\u escape (surrogate pairs beyond
    U+FFFF)."""
    units = text.encode("utf-16-be")
    hexes = (units[i : i + 2].hex() for i in range(0, len(units), 2))
    return '"' + "".join("\\u" + (h.upper() if upper else h) for h in hexes) + '"'


def quoted(text: str, style: int = 0) -> str:
    """`text` as a JSON string: 0 as compact producers write it (UTF-8, escapes only where JSON
    needs them), 1 with non-ASCII escaped, 2 and 3 every character escaped (lower, upper hex)."""
    if style == 0:
        return json.dumps(text, ensure_ascii=False)
    if style == 1:
        return json.dumps(text)
    return escaped(text, upper=style == 3)


def contract_time(millis: int) -> str:
    t = FIRST_INSTANT + timedelta(milliseconds=millis)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}."
        f"{t.microsecond // 1000:03d}Z"
    )


def money_literal(cents: int, form: int) -> str:
    """A valid amount of `cents` written as producers might: 0 `12.30`, 1 shortest (`12.3`, `12`),
    2 scientific with two decimals as written (`1.230e1`), 3 the same with `E+`."""
    whole, fraction = divmod(cents, 100)
    if form == 0:
        return f"{whole}.{fraction:02d}"
    if form == 1:
        return str(whole) if fraction == 0 else f"{whole}.{fraction:02d}".rstrip("0")
    digits = str(cents)
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exponent = len(digits) - 3
    return f"{mantissa}{'e' if form == 2 else 'E+' if exponent >= 0 else 'E'}{exponent}"


Pairs = list[tuple[str, str]]
"""An object's members as JSON texts: (quoted name, value)."""


def render(pairs: Pairs, space: str = "") -> str:
    if not space:
        return "{" + ",".join(f"{name}:{value}" for name, value in pairs) + "}"
    inner = f",{space}".join(f"{name}{space}:{space}{value}" for name, value in pairs)
    return "{" + space + inner + space + "}"


TEXT_POOL = [
    "order-7-00000001",
    "cust-00001",
    "EUR",
    "",
    " ",
    'Zoë & "co"',
    "back\\slash",
    "tab\there",
    "new\nline",
    "\x00",
    "\x1f",
    "\x7f",
    "€",
    "😀",
    "\U0001d7d8\U0001d7d9",  # mathematical digits
    "\u2028",
    "\ufeff",
    "日本語",
    "\ue000",
    "\uffff",
    "\U0010ffff",
    "amount",
    '"amount":1.234',
    "{}",
    "]}",
    "null",
    "2026-11-27T10:00:00.123Z",
    "\\u0041",
    "a" * 300,
]
TEXT = st.one_of(st.sampled_from(TEXT_POOL), st.text(max_size=6))
IDS = st.one_of(st.integers(0, 99_999_999).map(lambda n: f"order-7-{n:08d}"), TEXT)
MONEY = st.builds(money_literal, st.integers(0, 999_999_999_999), st.integers(0, 3))
TIMESTAMP = st.integers(0, LAST_MILLISECOND).map(contract_time)
JSON_SPACE = st.sampled_from([" ", "\n", "\t", "\r\n", "  \n\t"])
ODD_SPACE = st.sampled_from(
    ["\u00a0", "\u2028", "\u2029", "\u3000", "\x0b", "\x0c", "\x00", "\x85", "\ufeff"]
)


def digit_run(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.integers(min_size, max_size).flatmap(
        lambda n: (
            st.integers(0, 9).map(lambda d: str(d) * n) | st.integers(1, 10**n - 1).map(str)
            if n <= 30
            else st.just("7" * n)
        )
    )


NUMBER = st.builds(
    lambda sign, whole, fraction, exponent: sign + whole + fraction + exponent,
    st.sampled_from(["", "", "-"]),
    st.one_of(st.sampled_from(["0", "1", "12", "9999999999", "10000000000", "00", "01"]), digit_run(1, 25)),
    st.one_of(
        st.sampled_from(["", "", ".0", ".00", ".000", ".1", ".12", ".123", ".5", ".10", ".120", ".995"]),
        digit_run(1, 25).map(lambda d: "." + d),
    ),
    st.one_of(
        st.sampled_from(["", "", "", "e0", "E2", "e-2", "e+1", "e-3", "E-1", "e00002", "e-0003"]),
        st.sampled_from(["e400", "e-400", "e-324", "e308", "e20", "e9", "e10", "e-9", "e-10"]),
        st.sampled_from(["e9999999999999999999", "e-9999999999999999999", "e999999999999999999"]),
        st.tuples(st.sampled_from(["e", "E", "e-", "e+", "E-"]), digit_run(1, 25)).map("".join),
    ),
)
"""Any JSON number (and some that are not: `00`, `01`), from money to 1e-400."""
NOT_NUMBERS = st.sampled_from(
    ["NaN", "-NaN", "Infinity", "-Infinity", "+1", ".5", "5.", "1e", "-", "0x10", "1_000", "\u0661", "--1"]
)
SCALAR = st.one_of(st.sampled_from(["null", "true", "false"]), NUMBER, TEXT.map(quoted))
JSON_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(TEXT.map(quoted), inner), max_size=3).map(render),
    ),
    max_leaves=5,
)


@st.composite
def odd_timestamp(draw: st.DrawFn) -> str:
    """A timestamp text that is not quite the contract's, or not a real instant."""
    good = draw(TIMESTAMP)
    kind = draw(st.integers(0, 7))
    if kind == 0:  # random digits in the right places: month 13, February 30, hour 24, second 60 ...
        parts = [draw(st.integers(0, 10**n - 1)) for n in (4, 2, 2, 2, 2, 2, 3)]
        return "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:03d}Z".format(*parts)
    if kind == 1:  # an offset or a zone other than Z
        return good[:-1] + draw(
            st.sampled_from(["+01", "+0130", "+01:00", "-05", "z", "", "+00:00", "Z ", " Z"])
        )
    if kind == 2:  # other fraction digits
        return good[:19] + draw(st.sampled_from(["", ".", ".1", ".12", ".1234", ".123456"])) + "Z"
    if kind == 3:  # other separators
        return good.replace("T", draw(st.sampled_from([" ", "t", "_"])))
    if kind == 4:  # year 0000
        return "0000" + good[4:]
    if kind == 5:  # a digit that is not ASCII
        position = draw(st.sampled_from([0, 3, 5, 8, 11, 14, 17, 20]))
        digit = draw(st.sampled_from(["\u0662", "\uff12", "\U0001d7d0", "\u07c2"]))
        return good[:position] + digit + good[position + 1 :]
    if kind == 6:  # whitespace around it, or text after it
        return draw(st.sampled_from([" ", "", "\n"])) + good + draw(st.sampled_from([" ", "\n", "x"]))
    return draw(st.sampled_from(["2026-11-27", "10:00:00.000Z", "2026-11-27T10:00:00", "", "now"]))


def deep_value(depth: int, kind: int) -> str:
    """A value nested `depth` levels (1: a flat array)."""
    if kind == 0:
        return "[" * depth + "]" * depth
    if kind == 1:
        return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)
    half = depth // 2
    return '[{"a":' * half + "[" * (depth - 2 * half) + "1" + "]" * (depth - 2 * half) + "}]" * half


@st.composite
def order_records(draw: st.DrawFn) -> list[bytes | None]:
    """A contract order, as drawn, and a mutation of it."""
    fields = {
        "order_id": quoted(draw(IDS), draw(st.sampled_from([0, 0, 0, 1, 2]))),
        "customer_id": quoted(draw(IDS)),
        "amount": draw(MONEY),
        "currency": quoted(draw(st.sampled_from(["EUR", "USD", "€", ""]))),
        "timestamp": quoted(draw(TIMESTAMP)),
    }
    names = {name: quoted(name) for name in ORDER_FIELDS}
    space = draw(st.sampled_from(["", "", "", " ", "\n"]))  # mostly compact: the fast path's shape
    order = render([(names[f], fields[f]) for f in ORDER_FIELDS], space).encode()
    mutation = draw(st.sampled_from(MUTATION_CHOICES))
    event(f"mutation: {mutation}")
    extra: Pairs = []
    changed = MUTATIONS[mutation](draw, fields, names, extra)
    if isinstance(changed, bytes | None):
        return [order, changed]
    pairs = [(names[f], fields[f]) for f in ORDER_FIELDS if f in fields]
    pairs = extra + pairs if draw(st.booleans()) else pairs + extra
    return [order, render(pairs, space).encode()]


Mutation = Callable[[st.DrawFn, dict[str, str], dict[str, str], Pairs], bytes | bool | None]
"""Changes the order's fields, names and extra members in place (returns True), or returns the
whole value (bytes or None)."""


def _none(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    return True


def _missing(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    del fields[draw(st.sampled_from(ORDER_FIELDS))]
    return True


def _null(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    fields[draw(st.sampled_from(ORDER_FIELDS))] = "null"
    return True


def _other_value(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    fields[draw(st.sampled_from(ORDER_FIELDS))] = draw(JSON_VALUE)
    return True


def _amount(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    fields["amount"] = draw(st.one_of(NUMBER, NUMBER, NOT_NUMBERS, MONEY.map(lambda m: "-" + m)))
    return True


def _timestamp(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    fields["timestamp"] = quoted(draw(odd_timestamp()))
    return True


def _escaped_names(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    for name in draw(st.lists(st.sampled_from(ORDER_FIELDS), min_size=1, max_size=5)):
        names[name] = quoted(name, draw(st.integers(2, 3)))
    return True


def _duplicate(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    name = draw(st.sampled_from(ORDER_FIELDS))
    again = draw(st.sampled_from([fields[name], "null", draw(MONEY), quoted("x")]))
    extra.append((quoted(name, draw(st.sampled_from([0, 2]))), again))
    return True


def _extra_members(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    extra += draw(st.lists(st.tuples(TEXT.map(quoted), JSON_VALUE), min_size=1, max_size=3))
    return True


def _nested_amount(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    inner = render([(quoted("amount", draw(st.sampled_from([0, 2]))), draw(NUMBER))])
    extra.append((quoted("x"), draw(st.sampled_from([inner, f"[{inner}]", f'{{"y":{inner}}}']))))
    return True


def _deep(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    # The record is level 1: a member nested 999 deep makes 1,000 levels, the most JSON parsers take.
    nested = deep_value(draw(st.integers(996, 1002)), draw(st.integers(0, 2)))
    if draw(st.integers(0, 4)) == 0:
        fields["amount"] = nested
    else:
        extra.append((quoted("deep"), nested))
    return True


def _long_number(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    # At most 1,000 digits in a number, counting those of the fraction and of the exponent.
    digits = draw(st.integers(998, 1002))
    shape = draw(st.integers(0, 3))
    number = [
        "9" * digits,
        "1." + "0" * (digits - 1),
        "-1" + "0" * (digits - 4) + "e-2",
        "0.5e" + "0" * (digits - 3) + "1",
    ][shape]
    if draw(st.booleans()):
        fields["amount"] = number
    else:
        extra.append((quoted("n"), number))
    return True


def _long_name(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    # At most 50,000 UTF-16 code units in a field name; a character beyond U+FFFF is two.
    units = draw(st.integers(49_998, 50_002))
    name = draw(st.sampled_from(["k" * units, "😀" * (units // 2) + "k" * (units % 2), "é" * units]))
    extra.append((quoted(name, draw(st.sampled_from([0, 0, 1]))), "1"))
    return True


def _surrogates(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    escape = draw(
        st.sampled_from(["\\ud800", "\\udc00", "\\uDBFF", "\\ud83d\\ude00", "\\ud83dx", "\\udc00\\ud800"])
    )
    if draw(st.booleans()):
        fields["order_id"] = f'"o{escape}"'
    else:
        extra.append((draw(st.sampled_from(['"x"', f'"{escape}"'])), f'"{escape}"'))
    return True


def _not_a_number(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bool:
    extra.append((quoted("x"), draw(NOT_NUMBERS)))
    return True


def _bytes(draw: st.DrawFn, fields: dict[str, str], names: dict[str, str], extra: Pairs) -> bytes | None:
    """A change to the record's bytes rather than to its fields."""
    text = render([(names[f], fields[f]) for f in ORDER_FIELDS])
    value = text.encode()
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return draw(st.sampled_from([None, b""]))
    if kind == 1:
        return b"\xef\xbb\xbf" + value  # a byte-order mark
    if kind == 2:  # whitespace JSON does not know, around the object or between its tokens
        odd = draw(ODD_SPACE)
        where = draw(st.integers(0, 3))
        return [odd + text, text + odd, text.replace(",", "," + odd, 1), text.replace(":", odd + ":", 1)][
            where
        ].encode()
    if kind == 3:  # whitespace JSON knows
        return (
            draw(JSON_SPACE)
            + render([(names[f], fields[f]) for f in ORDER_FIELDS], draw(JSON_SPACE))
            + draw(JSON_SPACE)
        ).encode()
    if kind == 4:  # text after the object
        tail = draw(
            st.sampled_from(
                [
                    "xyz",
                    "}",
                    " {}",
                    ",1",
                    "]",
                    "\x00",
                    "\u2028",
                    " //c",
                    "/*c*/",
                    "null",
                    '"x"',
                    "],[1",
                    "\n\n",
                    "{",
                    "\ufeff",
                ]
            )
        )
        return (text + tail).encode()
    if kind == 5:  # bytes that are not UTF-8
        bad = draw(
            st.sampled_from(
                [
                    b"\x80",
                    b"\xff",
                    b"\xc0\x80",
                    b"\xed\xa0\x80",
                    b"\xf4\x90\x80\x80",
                    b"\xe2\x82",
                    b"\xfe\xff",
                ]
            )
        )
        at = draw(st.integers(0, len(value)))
        return value[:at] + bad + value[at:]
    if kind == 6:  # cut short
        return value[: draw(st.integers(1, len(value) - 1))]
    if kind == 7:  # one byte changed
        at = draw(st.integers(0, len(value) - 1))
        return value[:at] + bytes([draw(st.integers(0, 255))]) + value[at + 1 :]
    if kind == 8:  # not an object
        return draw(
            st.sampled_from([b"[]", b"null", b"1", b'"x"', b"true", b"[" + value + b"]", b" ", b"\n"])
        )
    currency = fields["currency"]
    if kind == 9:  # a NUL or a control character inside a string
        control = draw(st.sampled_from(['"E\x00R"', '"E\x1fR"', '"E\tR"', '"E\x7fR"']))
        return text.replace(f'"currency":{currency}', f'"currency":{control}').encode()
    if kind == 10:  # single quotes, unquoted names, comments, trailing commas: JSON5, not JSON
        return draw(
            st.sampled_from(
                [
                    text.replace(f'"currency":{currency}', "\"currency\":'EUR'"),
                    text.replace('"currency"', "currency"),
                    text[:-1] + ",}",
                    text[:-1] + "/*c*/}",
                ]
            )
        ).encode()
    return (text[:1] + draw(st.sampled_from(["\n", " ", "\t"])) + text[1:]).encode()


MUTATIONS: dict[str, Mutation] = {
    "none": _none,
    "missing": _missing,
    "null": _null,
    "other value": _other_value,
    "amount": _amount,
    "timestamp": _timestamp,
    "escaped names": _escaped_names,
    "duplicate": _duplicate,
    "extra members": _extra_members,
    "nested amount": _nested_amount,
    "deep": _deep,
    "long number": _long_number,
    "long name": _long_name,
    "surrogates": _surrogates,
    "not a number": _not_a_number,
    "bytes": _bytes,
}
MUTATION_CHOICES = [*sorted(MUTATIONS), "bytes", "bytes", "amount", "timestamp", "extra members"]
"""Each mutation once, the ones with the most kinds of defect more often."""


@st.composite
def huge_record(draw: st.DrawFn) -> bytes:
    """A value of about 1 MB; in ASCII, on either side of the fast path's limit (1,000,000
    characters)."""
    size = draw(st.integers(999_800, 1_000_100))
    piece, bytes_each = draw(st.sampled_from([("a", 1), ("é", 2), ("😀", 4), ('\\"', 2), ("\\u00e9", 6)]))
    n = size // bytes_each
    fields = {
        "order_id": '"big"',
        "customer_id": '"' + piece * n + '"',
        "amount": draw(MONEY),
        "currency": '"EUR"',
        "timestamp": quoted(draw(TIMESTAMP)),
    }
    kind = draw(st.integers(0, 3))
    if kind == 1:
        fields["customer_id"], fields["currency"] = '"c"', '"' + piece * n + '"'
    if kind == 2:
        fields["customer_id"] = '"c"'
        return render(
            [
                *((quoted(f), fields[f]) for f in ORDER_FIELDS),
                ('"x"', "[" + ",".join(["1.5"] * (n // 4)) + "]"),
            ]
        ).encode()
    if kind == 3:
        fields["amount"] = "12.300"
    return render([(quoted(f), fields[f]) for f in ORDER_FIELDS]).encode()


EXAMPLES = st.tuples(
    st.lists(order_records(), min_size=100, max_size=150), st.one_of(st.none(), st.none(), huge_record())
)
"""A couple of hundred records, sometimes with one of about 1 MB."""


@settings(
    max_examples=12,
    derandomize=True,  # the same records on every run: CI is deterministic
    database=None,  # failing examples are kept as REGRESSIONS below, not in a local database
    deadline=None,  # one example is one Spark job
    # A failure names the records the parsers disagree on; shrinking a batch would cost a Spark job
    # per step and say no more.
    phases=[Phase.explicit, Phase.generate],
    # `spark` is the run's one SparkSession: nothing to reset between examples.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(EXAMPLES)
def test_both_parsers_give_every_record_the_same_verdict(
    spark: SparkSession, example: tuple[list[list[bytes | None]], bytes | None]
) -> None:
    drawn, huge = example
    values = [value for pair in drawn for value in pair] + ([huge] if huge else [])
    for value in values:
        event(f"python: {python_verdict(value)[0] or 'valid'}")
    assert disagreements(spark, values) == []


# -- the disagreements found, kept ---------------------------------------------------------------------
TS = '"2026-11-27T10:00:00.123Z"'
MICROS = 1_795_773_600_123_000
"""2026-11-27T10:00:00.123Z in microseconds since 1970."""


def order(
    amount: str = "12.30", timestamp: str = TS, *, first: str = "", last: str = "", after: str = ""
) -> bytes:
    """An order with `first` and `last` members around the contract's and `after` after the object."""
    members = f'"order_id":"o","customer_id":"c","amount":{amount},"currency":"EUR","timestamp":{timestamp}'
    return f"{{{first}{members}{last}}}{after}".encode()


def good(amount: str = "12.30", customer_id: str = "c") -> Verdict:
    return None, ("o", customer_id, amount, "EUR", MICROS)


BIG = 1_000_000
"""FAST_PATH_MAX_CHARS: a longer value takes the VARIANT path even in the canonical shape."""
BIG_ORDER_LENGTH = len(order()) - 1  # without the customer id's one character

REGRESSIONS: list[tuple[str, bytes | None, Verdict]] = [
    # Every reason code, once.
    ("tombstone", None, ("empty_value", None)),
    ("zero bytes", b"", ("empty_value", None)),
    ("cp1252 euro", order().replace(b'"EUR"', b'"\x80"'), ("invalid_utf8", None)),
    ("not an object", b"[1,2]", ("invalid_json", None)),
    ("no timestamp", order().replace(b',"timestamp":' + TS.encode(), b""), ("missing_field:timestamp", None)),
    ("null customer", order().replace(b'"c"', b"null"), ("missing_field:customer_id", None)),
    ("numeric timestamp", order(timestamp="1795773600123"), ("bad_type:timestamp", None)),
    ("numeric order id", order().replace(b'"o"', b"7"), ("bad_type:order_id", None)),
    ("amount as text", order('"12.30"'), ("bad_type:amount", None)),
    ("no such day", order(timestamp='"2026-02-30T10:00:00.000Z"'), ("bad_timestamp", None)),
    ("below zero", order("-0.01"), ("negative_amount", None)),
    # Spark took what the contract refuses. Timestamps: Spark's pattern allowed these forms.
    ("offset", order(timestamp='"2026-11-27T11:00:00.123+01"'), ("bad_timestamp", None)),
    ("offset with minutes", order(timestamp='"2026-11-27T11:30:00.123+0130"'), ("bad_timestamp", None)),
    ("two fraction digits", order(timestamp='"2026-11-27T10:00:00.12Z"'), ("bad_timestamp", None)),
    ("lowercase z", order(timestamp='"2026-11-27T10:00:00.123z"'), ("bad_timestamp", None)),
    ("year 0000", order(timestamp='"0000-11-27T10:00:00.123Z"'), ("bad_timestamp", None)),
    # Amounts: the VARIANT dropped trailing zeros, and a double was rounded or cut to 0.00.
    ("three decimals written", order("12.300"), ("bad_type:amount", None)),
    ("rounded from 12.345", order("12.345e0"), ("bad_type:amount", None)),
    ("four decimals in exponent form", order("1.2300e1"), ("bad_type:amount", None)),
    ("zero with five decimals", order("0e-5"), ("bad_type:amount", None)),
    ("tiny negative", order("-1e-5"), ("bad_type:amount", None)),
    ("below the smallest double", order("2e-324"), ("bad_type:amount", None)),
    (
        "escaped name, a zero too many",
        order(first='"\\u0061mount":5.550,').replace(b'"amount":12.30,', b""),
        ("bad_type:amount", None),
    ),
    # Text after the object: Spark's JSON parser stopped reading after it.
    ("text after the object", order(after="xyz"), ("invalid_json", None)),
    ("a second closing brace", order(after="}"), ("invalid_json", None)),
    ("a second object", order(after=" {}"), ("invalid_json", None)),
    ("a NUL after the object", order(after="\x00"), ("invalid_json", None)),
    ("U+2028 after the object", order(after="\u2028"), ("invalid_json", None)),
    ("no-break space after the object", order(after="\u00a0"), ("invalid_json", None)),
    ("an array closed after the object", order(after="],[1"), ("invalid_json", None)),
    # Python took what the contract refuses.
    (
        "Arabic-Indic digits",
        order(timestamp='"\u0662\u0660\u0662\u0666-11-27T10:00:00.123Z"'),
        ("bad_timestamp", None),
    ),
    ("half a surrogate pair", order(last=',"x":"\\ud800"'), ("invalid_json", None)),
    ("a number of 1,001 digits", order(last=',"x":' + "1" * 1001), ("invalid_json", None)),
    ("an amount of 1,001 digits", order("1" * 1001), ("invalid_json", None)),
    ("a name of 50,001 characters", order(last=',"' + "k" * 50_001 + '":1'), ("invalid_json", None)),
    (
        "a name of 50,002 UTF-16 units",
        order(last=',"' + "\U0001f600" * 25_001 + '":1'),
        ("invalid_json", None),
    ),
    ("nested 1,001 deep", order(last=',"x":' + "[" * 1000 + "]" * 1000), ("invalid_json", None)),
    # Python refused what the contract takes (its own stack ran out first), or crashed.
    ("nested 1,000 deep", order(last=',"x":' + "[" * 999 + "]" * 999), good()),
    ("objects nested 1,000 deep", order(last=',"x":' + '{"a":' * 998 + "{}" + "}" * 998), good()),
    ("exponent beyond Decimal", order("1e9999999999999999999"), ("bad_type:amount", None)),
    ("exponent at Decimal's edge", order("1e999999999999999999"), ("bad_type:amount", None)),
    ("zero, exponent beyond Decimal", order("0e9999999999999999999"), good("0.00")),
    ("zero, negative exponent beyond Decimal", order("0e-9999999999999999999"), ("bad_type:amount", None)),
    ("tiny member beyond Decimal", order(last=',"x":-1e-99999999999999999999'), good()),
    # Spark's JVM died (a stack overflow in schema_of_variant, to_json) on deep containers.
    ("deep objects as amount", order('{"a":' * 998 + "{}" + "}" * 998), ("bad_type:amount", None)),
    ("deep arrays as timestamp", order(timestamp="[" * 999 + "]" * 999), ("bad_type:timestamp", None)),
    # Both agreed all along, on the edges next to the ones above (Python's amount has two places
    # now, as DECIMAL(12,2): 12.00 where it said 12, 0.00 where it said -0.00).
    ("two decimals in exponent form", order("1.230e1"), good("12.30")),
    (
        "leading zeros in exponent form",
        order("0.0000000000000000000000000000000000000000012e43"),
        good("12.00"),
    ),
    ("negative zero", order("-0.00"), good("0.00")),
    ("largest amount", order("999999999999e-2"), good("9999999999.99")),
    ("a number of 1,000 digits", order(last=',"x":1.' + "1" * 999), good()),
    ("a name of 50,000 UTF-16 units", order(last=',"' + "\U0001f600" * 25_000 + '":1'), good()),
    ("a whole surrogate pair", order(last=',"x":"\\ud83d\\ude00"'), good()),
    ("nested amounts", order(first='"y":{"amount":5.555},'), good()),
    ("whitespace after the object", order(after=" \t\r\n"), good()),
    ("a byte-order mark", b"\xef\xbb\xbf" + order(), ("invalid_json", None)),
    ("NaN", order("NaN"), ("invalid_json", None)),
    ("duplicate names", order(last=',"order_id":"p"'), ("invalid_json", None)),
    # About 1 MB: on the fast path, just past its limit, and in other shapes.
    (
        "1 MB, fast path",
        order().replace(b'"c"', b'"' + b"c" * (BIG - BIG_ORDER_LENGTH) + b'"'),
        good(customer_id="c" * (BIG - BIG_ORDER_LENGTH)),
    ),
    (
        "1 MB, past the fast path",
        order().replace(b'"c"', b'"' + b"c" * (BIG + 1 - BIG_ORDER_LENGTH) + b'"'),
        good(customer_id="c" * (BIG + 1 - BIG_ORDER_LENGTH)),
    ),
    (
        "1 MB of emoji",
        order().replace(b'"c"', ('"' + "\U0001f600" * 250_000 + '"').encode()),
        good(customer_id="\U0001f600" * 250_000),
    ),
    ("1 MB, three decimals", order("12.300", last=',"x":"' + "x" * BIG + '"'), ("bad_type:amount", None)),
]


def test_the_disagreements_found_stay_fixed(spark: SparkSession) -> None:
    """Each case has the contract's verdict from both parsers (Spark with its fast path), and the
    same with a line break after it; together they give every reason code."""
    values = [value for _, value, _ in REGRESSIONS]
    expected = {name: verdict for name, _, verdict in REGRESSIONS}
    assert {name: python_verdict(value) for name, value, _ in REGRESSIONS} == expected
    by_spark = spark_verdicts(spark, values)
    assert {name: by_spark[i] for i, (name, _, _) in enumerate(REGRESSIONS)} == expected
    assert disagreements(spark, values) == []  # also with a line break after each
    reasons = {verdict[0].split(":")[0] for verdict in expected.values() if verdict[0]}
    assert reasons == {c.split(":")[0] for c in REASON_CODES}


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ('"' + "a" * 20_000_000 + '"', None),
        ('"' + "a" * 20_000_001 + '"', "invalid_json"),
        ('"' + "\U0001f600" * 10_000_001 + '"', "invalid_json"),  # 20,000,002 UTF-16 code units
    ],
    ids=["20M characters", "one more", "10M emoji and one"],
)
def test_a_string_longer_than_the_json_parser_takes_is_invalid_json(member: str, reason: str | None) -> None:
    """Spark's JSON parser refuses a string of more than 20,000,000 UTF-16 code units (the Spark side
    of this edge is in test_parsing_fast_path: too big to collect twice here)."""
    assert python_verdict(order(last=f',"x":{member}'))[0] == reason


def test_both_parsers_read_the_contracts_timestamp_pattern() -> None:
    assert shipments._TIMESTAMP.pattern == TIMESTAMP_PATTERN
