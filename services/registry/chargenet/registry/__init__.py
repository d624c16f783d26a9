"""chargenet registry service."""
