"""tokenledger: the token ledger of the prediction app (domain package, shipped as a layer)."""
