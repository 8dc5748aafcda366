"""The suggestion engine: guideline-grounded treatment-intensity suggestions (issue 6).

Pure Python (pydantic only): no I/O inside the rules, no torch, MONAI or Gradio. Public API:

* :class:`clinical.context.ClinicalContext`: the validated input (``shared/clinical/context.md``);
* :func:`clinical.engine.suggest` and :func:`clinical.engine.suggest_from_json_file`: the suggestion JSON;
* :data:`clinical.rules.RULES`: the rule registry (id, text, source, verification mark).

Every output carries the disclaimer (:data:`inference.disclaimer.DISCLAIMER`).
"""
