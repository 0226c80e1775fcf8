"""Prefect flows only: each reads as the outline of its run."""

from tasks import prefect_env, prefect_heartbeat

prefect_env.apply()
prefect_heartbeat.install()  # the flow run ends when its work does (not up to 1 s later)
