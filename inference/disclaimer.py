"""The one wording of the disclaimer that every output carries (UI, result JSON, SR, FHIR, PDF, the CLI's help).

A pure module (no numpy), so that the suggestion engine can import it and stay free of array libraries.
"""

DISCLAIMER = ("Decision support for clinicians; not a diagnosis. vfrisk is research software, not a diagnostic "
              "device.")
