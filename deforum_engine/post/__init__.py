"""After the render: what is made from a finished render folder (the gen-info .srt, ...)."""
