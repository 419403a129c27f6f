"""What every HTTP function shares: identity, idempotency keys, problem+json errors."""
