"""Hugging Face ``datasets`` features for our Arrow schemas, without importing ``datasets``.

``datasets`` reads a Parquet file's features from the ``huggingface`` key of its schema metadata
(``{"info": {"features": {...}}}``) and uses them for a column only when the column's Arrow type
equals the features' own Arrow type, nullability included; so the part files are written with
every field nullable (:func:`arrow_nullable`), and the ``{"bytes", "path"}`` image structs are
declared ``Image`` features, which decode to PIL images on access.  The card's YAML form of the
same features is :func:`features_yaml`.  ``tests/test_hf.py`` checks both against ``datasets``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

_IMAGE_FIELDS = ("bytes", "path")


def _is_image(t: pa.DataType) -> bool:
    return pa.types.is_struct(t) and [t.field(i).name for i in range(t.num_fields)] == list(_IMAGE_FIELDS)


def _nullable_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(t):
        return pa.struct([pa.field(t.field(i).name, _nullable_type(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_list(t):
        return pa.list_(_nullable_type(t.value_type))
    return t


def arrow_nullable(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every field, nested ones too, nullable (and no metadata)."""
    return pa.schema([pa.field(f.name, _nullable_type(f.type)) for f in schema])


def _value_dtype(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}" + (f", tz={t.tz}]" if t.tz else "]")
    names = {pa.string(): "string", pa.int32(): "int32", pa.int64(): "int64", pa.float64(): "float64",
             pa.float32(): "float32", pa.bool_(): "bool", pa.binary(): "binary"}
    if t in names:
        return names[t]
    raise ValueError(f"no datasets dtype for Arrow type {t}")


def feature_of(t: pa.DataType) -> dict[str, Any]:
    """The ``datasets`` feature dict (``Features.to_dict`` form) of one Arrow type."""
    if _is_image(t):
        return {"_type": "Image"}
    if pa.types.is_list(t):
        return {"feature": feature_of(t.value_type), "_type": "List"}
    if pa.types.is_struct(t):
        return {t.field(i).name: feature_of(t.field(i).type) for i in range(t.num_fields)}
    return {"dtype": _value_dtype(t), "_type": "Value"}


def features_dict(schema: pa.Schema) -> dict[str, Any]:
    """``datasets.Features.to_dict()`` of ``schema``."""
    return {f.name: feature_of(f.type) for f in schema}


def features_metadata(kind: str) -> dict[str, Any]:
    """The ``huggingface`` Parquet metadata of table ``kind`` (``shards``, ``traces``, ``rejects``)."""
    from add_pipeline.io.shards import SCHEMAS

    return {"info": {"features": features_dict(SCHEMAS[kind])}}  # type: ignore[index]


def _yaml_of(name: str | None, t: pa.DataType) -> dict[str, Any]:
    out: dict[str, Any] = {} if name is None else {"name": name}
    if _is_image(t):
        out["dtype"] = "image"
    elif pa.types.is_list(t):
        inner = t.value_type
        if pa.types.is_struct(inner) and not _is_image(inner):
            out["list"] = [_yaml_of(inner.field(i).name, inner.field(i).type) for i in range(inner.num_fields)]
        else:
            sub = _yaml_of(None, inner)
            out["list"] = sub["dtype"] if set(sub) == {"dtype"} else sub
    elif pa.types.is_struct(t):
        out["struct"] = [_yaml_of(t.field(i).name, t.field(i).type) for i in range(t.num_fields)]
    else:
        out["dtype"] = _value_dtype(t)
    return out


def features_yaml(schema: pa.Schema) -> list[dict[str, Any]]:
    """The features of ``schema`` in the dataset card's YAML form (``dataset_info.features``)."""
    return [_yaml_of(f.name, f.type) for f in schema]
