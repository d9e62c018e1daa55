# The bot (Discord, and the HTTP API when VEO_HTTP_PORT is set), or the API alone: `python -m bot serve`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VEO_DATA_DIR=/data \
    VEO_HTTP_HOST=0.0.0.0 \
    VEO_HTTP_PORT=8080

RUN groupadd --system --gid 10001 veo \
    && useradd --system --uid 10001 --gid veo --home-dir /app --shell /usr/sbin/nologin veo \
    && mkdir -p /data \
    && chown veo:veo /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY storage ./storage
RUN pip install --no-cache-dir .

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('VEO_HTTP_PORT', '8080') + '/health', timeout=4)"]

ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
