"""Thin Prefect tasks around the plain functions of pipeline/ and agents/."""

from tasks import prefect_env

prefect_env.apply()
