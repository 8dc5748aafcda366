"""Clinical interoperability: the result of a scoring run written as DICOM SR and SEG, FHIR, PDF and JSON,
and the PACS links (DICOMweb client, C-STORE receiver).

The single entry point for reports is :func:`interop.reports.write_reports`. Nothing here imports torch,
MONAI or Gradio, and each format's library (highdicom, fhir.resources, reportlab, pynetdicom) is imported only
by the module that writes that format.

Every output carries the disclaimer (:data:`inference.disclaimer.DISCLAIMER`).
"""
