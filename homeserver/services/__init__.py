"""Domain services: one per area. They never import aiohttp.web."""
