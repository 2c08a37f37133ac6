# Image for docker-compose.yml and deploy/kubernetes: web, tiles, workers and beat share it.
FROM node:20-bookworm-slim AS frontend
WORKDIR /frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgdal32 libgeos-c1v5 libsqlite3-mod-spatialite \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY picterra picterra
COPY imagery imagery
COPY detectors detectors
COPY workers workers
COPY manage.py ./
COPY --from=frontend /frontend/dist frontend/dist
# Editable, so settings find the templates and the built app beside the code in /app.
RUN pip install --no-cache-dir -c requirements.lock -e .
EXPOSE 8000
