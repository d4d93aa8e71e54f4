"""medvl.data: the canonical record, its JSONL files, image checks and dataset generators."""

from medvl.data.jsonl import (
    JsonlCheck,
    RecordProblem,
    check_jsonl,
    iter_records,
    read_records,
    write_records,
)
from medvl.data.record import IMAGE_PLACEHOLDER, FieldError, Message, Record, validate_record

__all__ = [
    "IMAGE_PLACEHOLDER",
    "FieldError",
    "JsonlCheck",
    "Message",
    "Record",
    "RecordProblem",
    "check_jsonl",
    "iter_records",
    "read_records",
    "validate_record",
    "write_records",
]
