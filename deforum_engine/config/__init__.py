"""Settings: the model, files, presets, styles and the importers of other tools' files."""
