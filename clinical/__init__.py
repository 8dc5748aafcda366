"""The suggestion engine: guideline-grounded treatment-intensity suggestions (issue 6).

Pure Python (pydantic only): no I/O inside the rules, no torch, MONAI or Gradio. Public API:

* :class:`clinical.context.ClinicalContext`: the validated input (``shared/clinical/context.md``);
* :func:`clinical.engine.suggest` and :func:`clinical.engine.suggest_from_json_file`: the suggestion JSON;
* :data:`clinical.rules.RULES`: the rule registry (id, text, source, verification mark, keys it raises);
* :data:`clinical.vocabulary.ALERT_SEVERITY`: the severity of every alert key (the order alerts are shown in);
* ``python -m clinical.rules_doc``: the README section "How the engine decides", generated from the registry.

Every output carries the disclaimer (:data:`inference.disclaimer.DISCLAIMER`).
"""
