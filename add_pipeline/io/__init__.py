"""Reading and writing: inputs, images, the shard store, and the public reader of layered samples."""

from add_pipeline.io.layered import Layer, LayeredSample, decode_row
from add_pipeline.io.reader import LayeredShards, ReaderError

__all__ = ["Layer", "LayeredSample", "LayeredShards", "ReaderError", "decode_row"]
