"""chargenet gateway service."""
