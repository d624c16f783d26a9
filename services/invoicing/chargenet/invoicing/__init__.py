"""chargenet invoicing service."""
