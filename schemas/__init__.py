"""The Avro contract between recorder and replayer: versioned schemas, their types, the codec."""

from schemas.codec import Codec, Encoded, available_versions, load_schema
from schemas.records import HttpExchange, ReplayResult, ReplaySession

__all__ = [
    "Codec",
    "Encoded",
    "HttpExchange",
    "ReplayResult",
    "ReplaySession",
    "available_versions",
    "load_schema",
]
