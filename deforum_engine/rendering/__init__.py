"""The render: inputs checked, steps chosen once, the frame loop, the recipe, the summary."""
