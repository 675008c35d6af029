"""The single exception of the protocol package and its reason codes.

Receivers catch exactly one type, count it by ``reason`` (a stable string, usable as a metric label and as
an ``Error.code`` on the wire) and by ``sender`` when the bad message still told us who sent it.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Why a message was refused. Values are stable: they appear in metrics and in Error messages."""

    OVERSIZE = "OVERSIZE"  # encoded message larger than the limit
    NOT_MSGPACK = "NOT_MSGPACK"  # not bytes, or not one well-formed msgpack object
    NOT_A_MAP = "NOT_A_MAP"  # top level is not a map
    UNKNOWN_TYPE = "UNKNOWN_TYPE"  # missing or unknown `type`
    BAD_VERSION = "BAD_VERSION"  # missing or different `protocol` major version
    MISSING_FIELD = "MISSING_FIELD"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    BAD_FIELD = "BAD_FIELD"  # a field of the wrong type
    BAD_ARRAY = "BAD_ARRAY"  # malformed array extension (header, length, bool bytes)
    BAD_DTYPE = "BAD_DTYPE"  # unsupported or wrong array dtype
    BAD_SHAPE = "BAD_SHAPE"  # wrong number of dimensions or an empty axis where one is required
    NON_FINITE = "NON_FINITE"  # NaN or infinity
    OUT_OF_RANGE = "OUT_OF_RANGE"  # integer or value outside its allowed range
    INCONSISTENT = "INCONSISTENT"  # fields disagree with each other (T, B, resets, checksums)
    SPEC_MISMATCH = "SPEC_MISMATCH"  # valid message that does not fit the run's SegmentSpec


class ProtocolError(Exception):
    """A message that cannot be encoded, decoded or accepted.

    ``message_type`` and ``sender`` are filled in when they could be read from the offending message, so a
    receiver can count refusals per sender and answer a wrong-version Hello with an Error.
    """

    def __init__(
        self,
        reason: Reason,
        detail: str,
        *,
        message_type: str | None = None,
        sender: str | None = None,
    ) -> None:
        self.reason = Reason(reason)
        self.detail = detail
        self.message_type = message_type
        self.sender = sender
        super().__init__(f"{self.reason.value}: {detail}")

    def __reduce__(self):  # keep picklable across processes (multiprocessing, pytest-xdist)
        return (_rebuild, (self.reason, self.detail, self.message_type, self.sender))


def _rebuild(reason: Reason, detail: str, message_type: str | None, sender: str | None) -> ProtocolError:
    return ProtocolError(reason, detail, message_type=message_type, sender=sender)
