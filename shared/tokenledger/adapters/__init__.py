"""Adapters to the outside world: DynamoDB, clock and ids."""
