"""vfrisk: 6-month vertebral fracture risk from spine CT and labs, with treatment-intensity suggestions.

Every output carries the disclaimer (:data:`inference.disclaimer.DISCLAIMER`).
"""

__version__ = "0.1.0"
