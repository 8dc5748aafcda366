"""Clinical interoperability: the result of a scoring run written as DICOM SR, SEG, Encapsulated PDF and key image
(Secondary Capture), FHIR, PDF and JSON, and the PACS links (DICOMweb client; C-STORE receiver with its intake,
records and outbox: :mod:`interop.listen`, :mod:`interop.intake`, :mod:`interop.state`).

The single entry point for reports is :func:`interop.reports.write_reports`. Nothing here imports torch,
MONAI or Gradio, and each format's library (highdicom, fhir.resources, reportlab, pynetdicom) is imported only
by the module that writes that format.

Every output carries the disclaimer (:data:`inference.disclaimer.DISCLAIMER`).
"""
