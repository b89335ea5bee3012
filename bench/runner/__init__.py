"""The runner: plan chunks, dispatch them to one worker per device, write each finished chunk
atomically, resume, and aggregate."""
