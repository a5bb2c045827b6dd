"""The REST API (and, in `airduck.api.web`, the browser pages): a FastAPI app over the `Lakehouse` facade.

Importing this package is cheap (no FastAPI): `airduck.api.config` is part of the project's config model.
Build the app with :func:`airduck.api.app.create_app`; `airduck serve` runs it with uvicorn.
"""
