"""Replace initializer values in serialized ONNX bytes without the ``onnx`` package (actors do not install it).

Why not ``SessionOptions.add_initializer``: ONNX Runtime constant-folds its graph (e.g. ``Transpose(W)`` of a weight
used by a MatMul) from the initializers *in the model*, before the overrides are applied, so any weight that
feeds a folded node silently keeps its old value (measured on AGaLiTe's step: logits off by 0.5). Patching the
model bytes and building the session from them is always exact.

The patch uses ``protobuf`` (a dependency of onnxruntime) with a three-message subset of ``onnx.proto``: only the
fields needed (``ModelProto.graph``, ``GraphProto.initializer``, ``TensorProto.dims/data_type/name/raw_data/
data_location``) are declared; everything else is kept as unknown fields and written back unchanged. It is the one
initializer patcher of the project: the learner (which has ``onnx``) uses it too, so both sides patch identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from policy.metadata import PolicyError

_F = descriptor_pb2.FieldDescriptorProto
_FLOAT = 1  # onnx.TensorProto.FLOAT


@cache
def _model_class() -> type:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="agalite_rl_onnx_subset.proto", package="agalite_rl_onnx_subset", syntax="proto2"
    )
    tensor = fdp.message_type.add(name="TensorProto")
    tensor.field.add(name="dims", number=1, type=_F.TYPE_INT64, label=_F.LABEL_REPEATED)
    tensor.field.add(name="data_type", number=2, type=_F.TYPE_INT32, label=_F.LABEL_OPTIONAL)
    tensor.field.add(name="name", number=8, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    tensor.field.add(name="raw_data", number=9, type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL)
    tensor.field.add(name="data_location", number=14, type=_F.TYPE_INT32, label=_F.LABEL_OPTIONAL)
    graph = fdp.message_type.add(name="GraphProto")
    graph.field.add(
        name="initializer",
        number=5,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=".agalite_rl_onnx_subset.TensorProto",
    )
    entry = fdp.message_type.add(name="StringStringEntryProto")
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    model = fdp.message_type.add(name="ModelProto")
    model.field.add(
        name="graph",
        number=7,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_OPTIONAL,
        type_name=".agalite_rl_onnx_subset.GraphProto",
    )
    model.field.add(
        name="metadata_props",
        number=14,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=".agalite_rl_onnx_subset.StringStringEntryProto",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("agalite_rl_onnx_subset.ModelProto"))


def replace_initializers(
    onnx_bytes: bytes, weights: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> bytes:
    """``onnx_bytes`` with the raw data of the named float32 initializers replaced by ``weights`` (and the model's
    ``metadata_props`` entries named in ``metadata`` set, e.g. the policy metadata of a newer version).

    Each target must be a float32 initializer stored as ``raw_data`` (the exporter guarantees it) of the new value's
    shape. Raises :class:`PolicyError` for unknown names, other dtypes or shape mismatches.
    """
    model = _model_class()()
    try:
        model.ParseFromString(onnx_bytes)
    except Exception as exc:  # protobuf's DecodeError
        raise PolicyError(f"cannot parse the ONNX model: {exc}") from exc
    remaining = dict(weights)
    for init in model.graph.initializer:
        arr = remaining.pop(init.name, None)
        if arr is None:
            continue
        arr = np.asarray(arr)
        if tuple(init.dims) != tuple(arr.shape):
            raise PolicyError(f"weight {init.name!r}: shape {tuple(arr.shape)} != graph's {tuple(init.dims)}")
        if init.data_type != _FLOAT:
            raise PolicyError(f"initializer {init.name!r} is not float32 (ONNX type {init.data_type})")
        new = np.ascontiguousarray(arr, dtype="<f4")
        if init.data_location != 0 or len(init.raw_data) != new.nbytes:
            raise PolicyError(
                f"initializer {init.name!r} holds {len(init.raw_data)} raw bytes (location {init.data_location}), "
                f"the new value has {new.nbytes}"
            )
        init.raw_data = new.tobytes()
    if remaining:
        raise PolicyError(f"no initializers named {sorted(remaining)[:5]} in the graph")
    for key, value in (metadata or {}).items():
        entries = [e for e in model.metadata_props if e.key == key]
        if entries:
            entries[0].value = value
        else:
            model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()
