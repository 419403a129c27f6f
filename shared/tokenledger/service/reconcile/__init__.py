"""Reconciliation: check every account's chain and stored balance, and the records around them.

Pure over streamed pages: the caller hands in iterables of pages (from a parallel scan, a
fake, an export); nothing here collects entries. Memory is one small `ChainCheck` per account
(plus a bounded buffer of lookups), never proportional to the number of entries.

A consistent cut without locks: every account's `version` is read before its entries are.
Entries with `seq > version` were written after the cut and are ignored for this run. A
write moves the account and puts its entry in one transaction, so anything suspicious seen
in the stream (a gap, entries beyond the cut that the account no longer covers, entries of
an account the cut did not see, pages out of order) is confirmed by an exact re-check (a
strongly consistent read of the account, then its chain in seq order) before it is
reported. Concurrent writes therefore never raise a finding, and eventually consistent
scans (half the read cost) are enough.

The modules, each importing only those above it:

- `ports`: what the reconciliation reads and writes through (adapters implement these);
- `findings`: the kinds of finding, and which of them make a run unhealthy;
- `chain`: the rules of one account's chain (seqs, balances, hashes) against its account item;
- `records`: the records around the chains (idempotency records, Stripe payments);
- `report`: the partial report, its merge, the published report and the snapshot (digest);
- `fleet`: the scheduled run over segments of the tables, whole or fanned out;
- `account`: one account on demand (the admin routes): its audit and its repair.
"""
