# The Quorum image: the `quorum` command, the flows and a Prefect worker (docker-compose.yml).
FROM python:3.12-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY agents agents
COPY backtest backtest
COPY cli cli
COPY core core
COPY deployments deployments
COPY exchange exchange
COPY flows flows
COPY notify notify
COPY pipeline pipeline
COPY risk risk
COPY store store
COPY tasks tasks
COPY data data
COPY prefect.yaml ./
RUN pip install -e .
ENTRYPOINT []
CMD ["quorum", "--help"]
