# One image for web, worker, beat and ingest (docker-compose.yml picks the command).

# The web app's front-end libraries (htmx, Chart.js) from npm, pinned by
# web/package-lock.json; served by WhiteNoise after collectstatic below.
FROM node:20-slim AS web-assets
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt gunicorn==23.0.0
COPY . .
COPY --from=web-assets /web/node_modules /app/web/node_modules
# Static files (the pages' CSS/JS, htmx, Chart.js, the API docs' assets) into var/static.
RUN DEBUG=true python manage.py collectstatic --noinput --verbosity 0
RUN useradd --create-home commonwatt && mkdir -p /app/var && chown -R commonwatt /app/var
USER commonwatt
EXPOSE 8000
CMD ["gunicorn", "utility.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
