-- A second database on the same PostgreSQL for the Prefect server (Quorum uses `quorum`).
CREATE DATABASE prefect;
