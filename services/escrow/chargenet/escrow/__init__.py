"""chargenet escrow service."""
