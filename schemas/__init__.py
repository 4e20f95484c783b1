"""The Avro contract between recorder and replayer: versioned schemas and the codec."""

from schemas.codec import Codec, Encoded, available_versions, load_schema

__all__ = ["Codec", "Encoded", "available_versions", "load_schema"]
