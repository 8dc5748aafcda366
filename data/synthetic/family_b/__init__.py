"""Phantom family B: a second synthetic CT generator written independently of family A.

Family A (:mod:`data.synthetic.anatomy`, :mod:`data.synthetic.cohort`) is the generator the model trains on.
Family B shares only the patient and outcome model (:mod:`data.synthetic.model`), the DICOM encoder
(:mod:`data.synthetic.dicom_writer`) and the cohort layout; its anatomy, tissues, scanner and fields of view are
its own, built from statistics derived from real spines (``stats.json``, see :mod:`.derive`). ``vfrisk synth
--family b`` writes a cohort (:func:`data.synthetic.family_b.cohort.write_cohort`).
"""
