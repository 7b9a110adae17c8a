"""ADD: agent-driven decomposition of natural photos into layered (background / shadow / object) shards."""

__version__ = "0.1.0"
