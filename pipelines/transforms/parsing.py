"""Parsing Kafka records of the event topics into typed rows, with every bad record split off.

Spark's permissive `from_json` turns garbage into nulls without a word. Here each record is parsed
with `try_parse_json` into a VARIANT, and every field is checked for presence and JSON type before
it is cast, so a record is either a typed event, a heartbeat (sales only), or a dead letter
carrying a reason. Where Spark's functions are laxer than the contract, the record's text is
checked too: nothing may follow the JSON object (`try_parse_json` stops reading after it), the
amount may be written with at most two decimals (the VARIANT keeps 12.300 as 12.3 and 12.345e0 as a
double that a cast would round), and a timestamp must have exactly the contract's form (Spark's
datetime pattern also takes offsets, one or two fraction digits, `z` and year 0000).

The reason codes, checked in the order of `pipelines.contracts.REASON_CODES` (first defect wins),
are the ones the Python processor gives for the same bytes, with the same values for a good record
(tests/transforms/test_parsers_differential.py compares both parsers on generated and mutated
records).

Most records take a fast path instead: a value in the canonical shape (`canonical_pattern`: the
contract's fields in order, plain ASCII strings, a plain amount) is a good event once its timestamp
is a real instant, and its fields are read straight off the text without a VARIANT parse. Only
the other records are parsed and checked as above; both paths give the same rows for the same
bytes (tests/transforms/test_parsing_fast_path.py).

Heartbeats (`{"heartbeat": true, "timestamp": "..."}`) are valid records that carry only event
time: they advance the watermark when events go quiet and are filtered out before aggregating.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.contracts import MONEY, TIMESTAMP_FORMAT, EventSpec
from pipelines.contracts.events import TIMESTAMP_PATTERN

KAFKA_COLUMNS = ("key", "value", "topic", "partition", "offset")
_AMOUNT_JSON_TYPES = r"^(BIGINT|DOUBLE|DECIMAL\(\d+,[0-2]\))$"
"""JSON numbers as VARIANT types: integers, doubles (exponent notation), decimals of <= 2 places."""


_END = r"(?![\s\S])"
"""The very end of the text; Java's `$` would also match before a final line break."""


def parse_timestamp(col: Column) -> Column:
    """Contract timestamp text (`2026-11-27T10:00:00.123Z`) -> TIMESTAMP, null when malformed."""
    return F.when(col.rlike(f"^{TIMESTAMP_PATTERN}{_END}"), _to_timestamp(col))


def _to_timestamp(col: Column) -> Column:
    """Text of the contract timestamp's form -> TIMESTAMP, null when no real instant (February 30)."""
    return F.try_to_timestamp(col, F.lit(TIMESTAMP_FORMAT))


def _field(doc: Column, name: str) -> Column:
    return F.variant_get(doc, f"$.{name}", "variant")


def _is_missing(doc: Column, name: str) -> Column:
    value = _field(doc, name)
    return value.isNull() | F.is_variant_null(value)


def _json_type(doc: Column, name: str) -> Column:
    return _value_type(_field(doc, name))


def _value_type(value: Column) -> Column:
    """The JSON type of a VARIANT as `schema_of_variant` names a scalar (STRING, BIGINT,
    DECIMAL(4,2), ...), and ARRAY or OBJECT for a container.

    `schema_of_variant` and `to_json` (which a cast to STRING uses) recurse once per level of a
    container and overflow the stack of the JVM running the task, killing it, on a value nested
    near JSON's 1,000-level limit (deep objects and deep arrays respectively); the casts to ARRAY
    and MAP look at one level only.
    """
    return (
        F.when(F.try_variant_get(value, "$", "array<variant>").isNotNull(), F.lit("ARRAY"))
        .when(F.try_variant_get(value, "$", "map<string,variant>").isNotNull(), F.lit("OBJECT"))
        .otherwise(F.schema_of_variant(value))
    )


def _count(text: Column, chars: str) -> Column:
    """How many of `chars` the text holds."""
    return F.length(text) - F.length(F.translate(text, chars, ""))


# -- checks on the text, where the VARIANT cannot tell ------------------------------------------------
# They run only on records that take the VARIANT path, and only on a text that parsed into a JSON
# object: such a text has no backslash outside strings, and after `_SHORT_ESCAPE` has replaced the
# escapes that could hide a quote or a backslash, every `"` left opens or closes a string.

_SHORT_ESCAPE = r'\\["\\/bfnrt]'
_QUOTED = r""""[^"]*"|'[^']*'"""
"""A string, once short escapes are gone; `'...'` too, which get_json_object would read as a string."""
_LEAF_CONTAINER = r"\{[^\[\]{}]*\}|\[[^\[\]{}]*\]"
_SENTINEL = "end"


def _bare_json(text: Column) -> Column:
    """The text with every string replaced by `""`: the same structure, numbers and whitespace."""
    return F.regexp_replace(F.regexp_replace(text, _SHORT_ESCAPE, "_"), _QUOTED, '""')


def _nothing_after_the_value(bare: Column) -> Column:
    """Whether the text holds one JSON value and then only whitespace, as JSON requires.

    `try_parse_json` stops reading after the first value (`{...}xyz` parses). Wrapped as
    `[<bare>,"end"]`, the sentinel is the array's second element only if the value was followed by
    nothing but whitespace: anything else breaks the parse, closes the array early or comes first
    (the bare text has no non-empty string to pose as the sentinel). A value nested 1,000 deep
    (the JSON parser's limit) is one level too deep to wrap, so its innermost containers are
    collapsed first.
    """

    def sentinel_second(bare_text: Column) -> Column:
        wrapped = F.concat(F.lit("["), bare_text, F.lit(f',"{_SENTINEL}"]'))
        return F.coalesce(F.get_json_object(wrapped, "$[1]") == _SENTINEL, F.lit(False))

    return sentinel_second(bare) | sentinel_second(F.regexp_replace(bare, _LEAF_CONTAINER, '""'))


_MEMBER_NUMBER = (
    r'("[^"\\]*+(?:\\.[^"\\]*+)*+)'  # a string, but for its closing quote
    r'(?:(")([ \t\n\r]*+:[ \t\n\r]*+)(-?[0-9][0-9.eE+-]*+)|("))'  # and a number member's value, or not
)
_QUOTE_MEMBER_NUMBER = "$1$2$3$2$4$2$5"
"""`"amount":12.300` -> `"amount":"12.300"`: the closing quote of the name quotes the number too.
Strings are matched whole (possessive: no recursion however long), so text in them is untouched."""


def _number_members_as_text(text: Column) -> Column:
    """The JSON text with every member whose value is a number given that number's text as a
    string instead, exactly as written: parsed, `$.amount` is the outermost object's amount as
    written (`12.300`), where the VARIANT of the text itself holds only its value (12.3)."""
    return F.regexp_replace(text, _MEMBER_NUMBER, _QUOTE_MEMBER_NUMBER)


def _written_decimals_at_most(number: Column, places: int) -> Column:
    """Whether a JSON number text has at most `places` decimals as written: digits after the point
    minus the exponent (`12.300` has 3, `1.2345e3` has 1, `5e-1` has 1), as the contract counts."""
    fraction = F.length(F.regexp_extract(number, r"\.([0-9]+)", 1))
    exponent = r"[eE]\+?(-?)0*([0-9]+)$"
    sign, digits = F.regexp_extract(number, exponent, 1), F.regexp_extract(number, exponent, 2)
    power = F.when(digits == "", F.lit(0)).otherwise(F.concat(sign, digits).try_cast("bigint"))
    # An exponent beyond 10^18: negative, far too many decimals; positive, far too large a number
    # (refused when cast to DECIMAL(12,2)) or zero (which has no decimals).
    return F.coalesce(
        F.when(F.length(digits) > 18, sign != "-").otherwise(fraction - power <= places), F.lit(False)
    )


_MAYBE_MORE_DECIMALS = (
    r":[ \t\n\r]*-?[0-9]+(?:\.[0-9]{3,}(?:[eE][-+]?[0-9]+)?|(?:\.[0-9]+)?[eE][-+]?[0-9]+)[ \t\n\r]*[,}\]]"
)
"""A member's value that is a number of three or more decimals or with an exponent (or text in a
string that looks like one). Only in a text that has one can the amount have more decimals written
than its VARIANT value shows."""


_ONE_FLAT_OBJECT = r"^[^\[\]{}]*+\{[^\[\]{}]*+\}[ \t\n\r]*+" + _END
"""A text whose only brackets are one `{` and, at its end but for whitespace, one `}`."""


def _one_flat_object(text: Column) -> Column:
    """Whether a text that parsed into a JSON object opens no other container and ends with the
    object's `}`: then nothing but whitespace follows the object, and no member is a container.
    Most records are such a text; only the others need `_bare_json` to tell."""
    return text.rlike(_ONE_FLAT_OBJECT)


_AMOUNT_TYPE = r"(BIGINT|DOUBLE|DECIMAL\(\d+,[0-2]\))"


def good_shape_pattern(spec: EventSpec) -> str:
    """A regex matching `schema_of_variant` of exactly the contract's object: every field present
    once, not null, `amount` a JSON number of at most two decimals, the others strings, nothing
    else. Variant objects list their fields sorted by name, whatever order the JSON had."""
    parts = [f"{name}: {_AMOUNT_TYPE if name == 'amount' else 'STRING'}" for name in sorted(spec.fields)]
    return "^OBJECT<" + ", ".join(parts) + ">$"


_CANONICAL_TEXT = r'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'
"""A JSON string of printable ASCII with no escapes: its text between the quotes is its value."""
_CANONICAL_AMOUNT = r"(?:0|[1-9][0-9]{0,9})(?:\.[0-9]{1,2})?"
"""A JSON number >= 0 with at most two decimals that fits DECIMAL(12,2), without exponent."""
_CANONICAL_TIMESTAMP = f'"{TIMESTAMP_PATTERN}"'


FAST_PATH_MAX_CHARS = 1_000_000
"""Longer values take the VARIANT path even in the canonical shape: its JSON parser refuses strings
over 20,000,000 characters (invalid_json), which reading off the text would not."""


def canonical_pattern(spec: EventSpec) -> str:
    """A regex matching the value text of a good event as the generators and most producers write
    it: one JSON object, the contract's fields in contract order with no spaces, every string
    printable ASCII with no escapes, `amount` a plain non-negative number of at most two decimals
    that fits DECIMAL(12,2), `timestamp` in the contract's shape. Such a record is a good event
    (once its timestamp is a real instant) and its values can be read straight off the text."""
    parts = []
    for name in spec.fields:
        value = {"amount": _CANONICAL_AMOUNT, "timestamp": _CANONICAL_TIMESTAMP}.get(name, _CANONICAL_TEXT)
        parts.append(f'"{name}":{value}')
    return "^\\{" + ",".join(parts) + "\\}" + _END


def _canonical_value(text: Column, name: str, *, string: bool) -> Column:
    """The value of field `name` in a text matching `canonical_pattern` (a string without its
    quotes). Values hold no quote, so `"name":` occurs once, where the field is."""
    if string:
        return F.substring_index(F.substring_index(text, f'"{name}":"', -1), '"', 1)
    return F.substring_index(F.substring_index(F.substring_index(text, f'"{name}":', -1), ",", 1), "}", 1)


def _error_reason(
    spec: EventSpec,
    text: Column,
    doc: Column,
    amount: Column,
    event_time: Column,
    is_heartbeat: Column,
    flat: Column | None = None,
) -> Column:
    """The first thing wrong with a record, as a reason code; null for a good one.

    Most records have the contract's shape: one regex over the document's schema proves every
    field present with its JSON type, and leaves only the checks of content (encoding, timestamp,
    amount range and sign). That is ~4x cheaper than the per-field checks, which every other
    record still goes through and which give the same reason codes (bench/: parsing was the
    revenue job's largest cost, paid in both of its queries). Only a document without nested
    containers can have that shape, and only such a one is given to `schema_of_variant` whole
    (`_value_type`). `flat` says whether the document has no nested container; computed from the
    text when not given.
    """
    full = _error_reason_per_field(spec, text, doc, amount, event_time, is_heartbeat)
    if flat is None:
        flat = _count(_bare_json(text), "{[") == 1
    has_good_shape = F.coalesce(flat & F.schema_of_variant(doc).rlike(good_shape_pattern(spec)), F.lit(False))
    # The same order as the per-field chain for a record of this shape: encoding, timestamp, amount.
    shaped = (
        F.when(~F.is_valid_utf8(text), F.lit("invalid_utf8"))
        .when(event_time.isNull(), F.lit("bad_timestamp"))
        .when(amount.isNull(), F.lit("bad_type:amount"))
        .when(amount < 0, F.lit("negative_amount"))
    )
    return F.when(has_good_shape, shaped).otherwise(full)


def _error_reason_per_field(
    spec: EventSpec, text: Column, doc: Column, amount: Column, event_time: Column, is_heartbeat: Column
) -> Column:
    """The first thing wrong with a record, checked field by field in contract order."""
    required = [f for f in spec.fields if f != "timestamp"]
    reason = F.when(F.col("value").isNull() | (F.length(F.col("value")) == 0), F.lit("empty_value"))
    reason = reason.when(~F.is_valid_utf8(text), F.lit("invalid_utf8"))
    reason = reason.when(doc.isNull() | (_value_type(doc) != "OBJECT"), F.lit("invalid_json"))
    reason = reason.when(_is_missing(doc, "timestamp"), F.lit("missing_field:timestamp"))
    reason = reason.when(_json_type(doc, "timestamp") != "STRING", F.lit("bad_type:timestamp"))
    reason = reason.when(event_time.isNull(), F.lit("bad_timestamp"))
    reason = reason.when(is_heartbeat, F.lit(None))
    for name in required:
        reason = reason.when(_is_missing(doc, name), F.lit(f"missing_field:{name}"))
    for name in spec.text_fields:
        reason = reason.when(_json_type(doc, name) != "STRING", F.lit(f"bad_type:{name}"))
    reason = reason.when(
        ~_json_type(doc, "amount").rlike(_AMOUNT_JSON_TYPES) | amount.isNull(), F.lit("bad_type:amount")
    )
    return reason.when(amount < 0, F.lit("negative_amount"))


def _error_detail(reason: Column, doc: Column, text: Column, amount: Column) -> Column:
    """A human-readable sentence for each reason code (the `error.detail` dead-letter header)."""
    field_name = F.regexp_extract(reason, r"^[a-z_]+:(.+)$", 1)
    field = F.variant_get(doc, F.concat(F.lit("$."), field_name), "variant")
    field_type = _value_type(field)
    return (
        F.when(reason == "empty_value", F.lit("the record has no value"))
        .when(reason == "invalid_utf8", F.lit("the value is not valid UTF-8 text"))
        .when(
            reason == "invalid_json",
            F.concat(F.lit("the value is not a JSON object: "), F.left(text, F.lit(80))),
        )
        .when(
            reason.startswith("missing_field:"),
            F.concat(F.lit("required field '"), field_name, F.lit("' is missing or null")),
        )
        .when(
            reason == "bad_type:amount",
            F.concat(
                F.lit("field 'amount' must be a JSON number with at most two decimals that fits "),
                F.lit("DECIMAL(12,2), got "),
                # A container is named by its type only: to_json could overflow on a deep one.
                F.when(field_type.isin("ARRAY", "OBJECT"), field_type).otherwise(
                    F.left(F.to_json(field), F.lit(40))
                ),
                F.lit(" ("),
                field_type,
                F.lit(")"),
            ),
        )
        .when(
            reason.startswith("bad_type:"),
            F.concat(F.lit("field '"), field_name, F.lit("' must be a JSON string, got "), field_type),
        )
        .when(
            reason == "bad_timestamp",
            F.concat(
                F.lit("timestamp "),
                F.left(F.to_json(_field(doc, "timestamp")), F.lit(40)),
                F.lit(" is not ISO-8601 UTC with milliseconds and Z (2026-11-27T10:00:00.123Z)"),
            ),
        )
        .when(
            reason == "negative_amount",
            F.concat(F.lit("amount "), amount.cast("string"), F.lit(" is negative")),
        )
    )


def parse_events(
    kafka_df: DataFrame, spec: EventSpec, *, fast_path: bool = True, timestamp_text: bool = False
) -> DataFrame:
    """Kafka source rows -> the Kafka columns (and `headers` if present), the event's typed fields in
    contract order
    (`amount` as DECIMAL(12,2), `timestamp` as `event_time` TIMESTAMP), `is_heartbeat`,
    `error_reason` and `error_detail` (both null for a good record).

    Typed columns are null on a record with an error; nothing is dropped here. `fast_path=False`
    parses every record into a VARIANT (the tests compare both ways). `timestamp_text=True` adds
    `timestamp_text`: a good record's `timestamp` exactly as it arrived (what a shipment's
    `created_at` carries), read off the text on the fast path, so no record is parsed twice.
    """
    text = F.col("value").cast("string")
    doc = F.col("_doc")
    fast = F.col("_fast")
    heartbeat = F.try_variant_get(doc, "$.heartbeat", "boolean") if spec.heartbeats else F.lit(False)
    # Fast path: a value of the canonical shape (canonical_pattern) is a good event once its
    # timestamp is a real instant; its fields are read off the text and it is never parsed into a
    # VARIANT. Every other record goes through the VARIANT parse and the checks below, which give
    # the same result for canonical records (tests/transforms/test_parsing_fast_path.py).
    canonical = (
        F.coalesce(
            (F.length(text) <= FAST_PATH_MAX_CHARS) & text.rlike(canonical_pattern(spec)), F.lit(False)
        )
        if fast_path
        else F.lit(False)
    )
    # The canonical pattern has proved the timestamp's form: only whether it is a real instant is left.
    fast_time = _to_timestamp(_canonical_value(text, "timestamp", string=True))
    bare = F.col("_bare")
    parsed = F.col("_parsed")
    simple = F.col("_simple")
    json_amount = F.col("_json_amount")
    as_written = F.col("_as_written")
    with_checks = (
        kafka_df.withColumn("_fast_time", F.when(canonical, fast_time))
        .withColumn("_fast", F.col("_fast_time").isNotNull())
        .withColumn("_parsed", F.when(~fast, F.try_parse_json(text)))
        .withColumn("_simple", parsed.isNotNull() & _one_flat_object(text))
        .withColumn("_bare", F.when(parsed.isNotNull() & ~simple, _bare_json(text)))
        # A text with more after its JSON value is no JSON value at all (invalid_json).
        .withColumn("_doc", F.when(simple | (parsed.isNotNull() & _nothing_after_the_value(bare)), parsed))
        .withColumn("_json_amount", F.try_variant_get(doc, "$.amount", MONEY.simpleString()))
        # The VARIANT keeps 12.300 as 12.3 and 12.345e0 as a double the cast rounds: where a number
        # may have more decimals written, the amount's own text decides.
        .withColumn("_as_written", json_amount.isNotNull() & text.rlike(_MAYBE_MORE_DECIMALS))
        .withColumn(
            "_amount_text",
            F.when(
                as_written,
                F.variant_get(F.try_parse_json(_number_members_as_text(text)), "$.amount", "string"),
            ),
        )
        .withColumn(
            "_amount",
            F.when(fast, _canonical_value(text, "amount", string=False).cast(MONEY))
            .when(~as_written, json_amount)
            .when(_written_decimals_at_most(F.col("_amount_text"), 2), json_amount),
        )
        # Only a JSON string is read as text: the cast of a container would be its JSON (to_json),
        # which a flat object has none of.
        .withColumn(
            "_timestamp_text",
            F.when(
                simple | (_json_type(doc, "timestamp") == "STRING"),
                F.variant_get(doc, "$.timestamp", "string"),
            ),
        )
        .withColumn(
            "_event_time",
            F.when(fast, F.col("_fast_time")).otherwise(parse_timestamp(F.col("_timestamp_text"))),
        )
        .withColumn("_hb", ~fast & F.coalesce(heartbeat, F.lit(False)))
        .withColumn(
            "error_reason",
            F.when(fast, F.lit(None).cast("string")).otherwise(
                _error_reason(
                    spec,
                    text,
                    doc,
                    F.col("_amount"),
                    F.col("_event_time"),
                    F.col("_hb"),
                    flat=simple | (_count(bare, "{[") == 1),
                )
            ),
        )
    )
    is_event = F.col("error_reason").isNull() & ~F.col("_hb")

    def typed(name: str) -> Column:
        if name == "amount":
            return F.when(is_event, F.col("_amount")).alias("amount")
        if name == "timestamp":
            return F.when(F.col("error_reason").isNull(), F.col("_event_time")).alias("event_time")
        value = F.when(fast, _canonical_value(text, name, string=True)).otherwise(
            F.variant_get(doc, f"$.{name}", "string")
        )
        return F.when(is_event, value).alias(name)

    # Headers ride along when the source was read with includeHeaders=true (shipments carry them).
    passthrough = [*KAFKA_COLUMNS, *(["headers"] if "headers" in kafka_df.columns else [])]
    return with_checks.select(
        *passthrough,
        *[typed(f) for f in spec.fields],
        (F.col("error_reason").isNull() & F.col("_hb")).alias("is_heartbeat"),
        "error_reason",
        _error_detail(F.col("error_reason"), doc, text, F.col("_amount")).alias("error_detail"),
        *(
            [
                F.when(
                    F.col("error_reason").isNull(),
                    F.when(fast, _canonical_value(text, "timestamp", string=True)).otherwise(
                        F.col("_timestamp_text")
                    ),
                ).alias("timestamp_text")
            ]
            if timestamp_text
            else []
        ),
    )


def filter_valid(parsed_df: DataFrame) -> DataFrame:
    """Good records (events and heartbeats) of `parse_events` output."""
    return parsed_df.filter(F.col("error_reason").isNull())


def filter_bad_records(parsed_df: DataFrame) -> DataFrame:
    """Records with an error (for the dead-letter topic and the run's accounting)."""
    return parsed_df.filter(F.col("error_reason").isNotNull())
