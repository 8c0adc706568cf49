# The streammon image: one entry point, `streammon <command>` (worker, actuator, topics ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements/main.txt ./requirements/main.txt
# Dependencies from the lock only (hashes checked), in their own layer.
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/main.txt
COPY pyproject.toml README.md ./
COPY streammon ./streammon
COPY topics ./topics
# Editable install: the topic specs in /app/topics are found next to the package.
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e . \
    && useradd --system --uid 10001 --home-dir /tmp/streammon streammon
USER streammon
ENTRYPOINT ["streammon"]
CMD ["--help"]
