"""The models: one cache for every loaded model (cache.py), pipelines and what loads on them, depth, ControlNets."""
