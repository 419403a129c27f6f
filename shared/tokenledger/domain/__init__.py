"""Pure domain: entries, accounts, rules and errors. No I/O here."""
