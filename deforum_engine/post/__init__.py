"""After the render: what is made from the written frames (RIFE interpolation, Real-ESRGAN upscaling,
seamless loops, the gen-info .srt)."""
