"""A Matrix push gateway compatible with Sygnal (API, config file and metrics).

It runs as its own process (``python -m bridges.push_gateway --config FILE``) or is mounted into
another aiohttp application with :func:`bridges.push_gateway.server.mount`. It must not import
``homeserver``: the dependency only goes the other way.
"""
