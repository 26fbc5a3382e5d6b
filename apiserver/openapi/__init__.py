"""Schema of the built-in types: OpenAPI documents, strict field validation, type checks.

One generated file, definitions.json (tools/gen_openapi.py, from the upstream Kubernetes
definitions), feeds everything here and the strategic merge patch in apiserver/patch.py, so
the documents kubectl reads, the validation the server applies and the way it merges patches
cannot drift apart. The kubernetes client is not needed at runtime.
"""

from apiserver.openapi.documents import (
    OPENAPI_V2_PROTOBUF_TYPE,
    openapi_v2,
    openapi_v2_protobuf,
    openapi_v3_document,
    openapi_v3_index,
)
from apiserver.openapi.schema import schema_for
from apiserver.openapi.validation import find_type_errors, find_unknown_fields

__all__ = [
    "OPENAPI_V2_PROTOBUF_TYPE",
    "find_type_errors",
    "find_unknown_fields",
    "openapi_v2",
    "openapi_v2_protobuf",
    "openapi_v3_document",
    "openapi_v3_index",
    "schema_for",
]
