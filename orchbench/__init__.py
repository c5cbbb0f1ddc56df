"""orchbench: measure the latency a model-serving orchestrator adds in front of a model."""

__version__ = "0.1.0"
