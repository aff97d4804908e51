"""Test set-up: offline hub, few threads, shared fixtures."""
import os

# Must be set before diffusers / transformers / huggingface_hub are imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

pytest_plugins = ["tiny_models", "tiny_depth"]
