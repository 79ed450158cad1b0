"""Pushing events, ephemeral events and to-device messages to application services
(`PUT {url}/_matrix/app/v1/transactions/{txnId}`); see service.py and queue.py."""
