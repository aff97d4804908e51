"""The studio: a local web app and HTTP API on top of the engine (`deforum-engine serve`).

A thin layer: a posted form or settings document becomes a validated `Settings` with the same
code as the CLI, and every render it starts is an ordinary render folder under `DATA/renders/`
that `deforum-engine resume`, `encode` and `batch` understand. A SQLite job table records which
folders exist and their state; one worker thread renders them one at a time, keeping the model
loaded between renders.

Modules: config (server options), database (SQLite), uploads, documents (form / API document ->
Settings), jobs (the job table), worker (the queue, live progress), safety (NSFW screening),
previews (preset preview clips), guard (token, origin and host checks), app (routes), a1111 (the
Deforum extension's API shape), server (uvicorn). FastAPI is imported only by app, a1111 and server.
"""
