"""Settings + loaded inputs -> the FramePlan: every per-frame value, up front; its plot; audio features."""
