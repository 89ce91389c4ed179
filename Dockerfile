# syntax=docker/dockerfile:1
# The distillery image: the shared kernel, the services and the migrations, no ML extras
# (a GPU worker image builds FROM this one and adds `.[ml]` / `.[gpu]`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DISTILLERY_ALEMBIC_INI=/app/alembic.ini

WORKDIR /app

# Explicit paths rather than `COPY . .`, so a local .venv or .git never enters the image.
# The `*` makes optional files optional.
COPY pyproject.toml README.md* alembic.ini* ./
COPY shared/ shared/
COPY services/ services/
COPY migrations/ migrations/
RUN pip install .

RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin distillery
USER 10001:10001

CMD ["distillery", "--help"]
