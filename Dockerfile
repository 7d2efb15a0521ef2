# The Redlake application image: web (gunicorn), Celery workers and beat all run from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 REDLAKE_VAR_DIR=/var/lib/redlake
WORKDIR /app
# ISSUE-13: bubblewrap (the sandbox TEE backend) and libseccomp (its seccomp filter, via pyseccomp)
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap libseccomp2 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --home /app redlake && mkdir -p /var/lib/redlake && chown redlake /var/lib/redlake
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY manage.py ./
COPY dataspace ./dataspace
# the attestation verifiers the key custodian calls
COPY enclaves ./enclaves
RUN SECRET_KEY=build-only python manage.py collectstatic --no-input -v 0
USER redlake
EXPOSE 8000
CMD ["gunicorn", "dataspace.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--timeout", "3600"]
