"""Non-UI logic of the web app: viewer rendering, users, audit log, upload handling, scoring and presentation.

Nothing here imports Gradio; ``app.py`` is the thin UI layer on top.
"""
