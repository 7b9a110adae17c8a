"""Input and output: decoding photos, enumerating inputs, writing Parquet shards."""
