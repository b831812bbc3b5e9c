# One image for web, worker, beat and ingest (docker-compose.yml picks the command).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt gunicorn==23.0.0
COPY . .
RUN useradd --create-home commonwatt && mkdir -p /app/var && chown commonwatt /app/var
USER commonwatt
EXPOSE 8000
CMD ["gunicorn", "utility.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
