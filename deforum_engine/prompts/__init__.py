"""Prompt text: A1111 prompt syntax, prompt keyframes, samplers (no torch)."""
