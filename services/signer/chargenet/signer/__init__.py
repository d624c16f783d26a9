"""chargenet signer service."""
