"""Use cases of the ledger, written against the ports in `ports`."""
