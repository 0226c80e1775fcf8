from flows import prefect_env

prefect_env.apply()
