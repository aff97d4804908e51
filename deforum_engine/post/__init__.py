"""After the render: RIFE frame interpolation, Real-ESRGAN upscaling, seamless loops."""
