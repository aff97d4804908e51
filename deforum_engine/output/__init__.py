"""Render output: the render folder, crash-safe frames, the resume state, the H.264 video, the frame writer.

A render folder holds `frames/000000.png ...`, `settings.json`, `resume.npz` and `<name>.mp4`.
Every file is written to a temp file and renamed into place, and the resume state is saved only
after its frames are synced to disk, so a render killed at any moment resumes cleanly.
"""
from deforum_engine.output.atomic import encode_png, read_frame
from deforum_engine.output.folder import RenderFolder, default_folder
from deforum_engine.output.resume import ResumeState, load_resume_state, save_resume_state
from deforum_engine.output.video import VideoWriter, X264_PRESETS, check_soundtrack, encode_folder, probe_video
from deforum_engine.output.writer import FrameWriter

__all__ = ["FrameWriter", "RenderFolder", "ResumeState", "VideoWriter", "X264_PRESETS", "check_soundtrack",
           "default_folder", "encode_folder", "encode_png", "load_resume_state", "probe_video", "read_frame",
           "save_resume_state"]
