"""vfrisk: 6-month vertebral fracture risk from spine CT and labs, with treatment-intensity suggestions.

Decision support for clinicians; not a diagnosis.
"""

__version__ = "0.1.0"
