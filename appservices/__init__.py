"""A small SDK for writing Matrix application services over HTTP (never imports `homeserver`).

* `AppServiceServer` (server.py): the transaction receiver, ping and the users/rooms queries;
* `ClientApi` / `Intent` (intent.py): acting as users of the namespace on the client-server API;
* `StateStore` (state.py): memberships and power levels learned from received events;
* `TransactionStore` (txn_store.py): handled transaction ids, in SQLite;
* `generate_registration` (registration.py): a registration file for the homeserver.
"""

from appservices.intent import ClientApi, Intent, MatrixRequestError
from appservices.registration import generate_registration, load_registration, write_registration
from appservices.server import AppServiceServer
from appservices.state import StateStore
from appservices.txn_store import TransactionStore

__all__ = [
    "AppServiceServer",
    "ClientApi",
    "Intent",
    "MatrixRequestError",
    "StateStore",
    "TransactionStore",
    "generate_registration",
    "load_registration",
    "write_registration",
]
