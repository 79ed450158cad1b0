"""One module per table group. Stores return frozen dataclasses; `*_txn` methods join a transaction."""
