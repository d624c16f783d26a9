"""chargenet wallet service."""
