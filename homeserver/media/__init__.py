"""The media repository: uploads, downloads, thumbnails, virus scanning, URL previews.

Domain code only (no aiohttp.web): `api/media` turns a `Download` into a streamed response.
"""
