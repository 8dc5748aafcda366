"""Batch scoring of imaging archives (``vfrisk score``): parallel, resumable, exact.

Public entry points: :func:`score_cli` (what the CLI calls) and :func:`run_score` with :class:`ScoreOptions`.
No torch, MONAI or Gradio is imported anywhere in this package.
"""

from inference.batch.run import ScoreOptions, run_score, score_cli

__all__ = ["ScoreOptions", "run_score", "score_cli"]
