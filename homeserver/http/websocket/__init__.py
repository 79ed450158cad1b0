"""Sync over a WebSocket (docs/websocket.md): the protocol, request dispatch and the connection."""
