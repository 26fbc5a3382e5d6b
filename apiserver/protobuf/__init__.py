"""Decoding Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).

kubectl's typed commands (`kubectl create namespace|configmap|deployment|service ...`) and
client-go send protobuf and do not fall back to JSON on 415, so the apiserver must read it.
It only ever reads: responses stay JSON, which those clients accept too. decode_object turns
a body into exactly the dict the JSON decoder would have produced for the same object, so
everything after body decoding is unaware of the wire format.
"""

from apiserver.protobuf.decoder import decode_object
from apiserver.protobuf.wire import ProtobufError

__all__ = ["ProtobufError", "decode_object"]
