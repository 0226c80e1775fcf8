"""The web dashboard (`quorum dashboard`): FastAPI pages and JSON API over the store."""
