"""Prefect flows only: each reads as the outline of its run."""

from tasks import prefect_env

prefect_env.apply()
