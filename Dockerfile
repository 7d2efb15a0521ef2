# The Redlake application image: web (gunicorn), Celery workers and beat all run from it.

# The portal: contracts compiled (its ABIs module is generated from them), then the Vite build.
FROM node:20-slim AS frontend
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY contracts ./contracts
RUN bash contracts/forge.sh build --quiet
COPY frontend/package.json frontend/package-lock.json ./frontend/
RUN cd frontend && npm ci --no-audit --no-fund --loglevel=error
COPY frontend ./frontend
RUN cd frontend && npm run build

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 REDLAKE_VAR_DIR=/var/lib/redlake
WORKDIR /app
# The PKCS#11 module the keyrings load (SoftHSM2; a real HSM's or KMS's module is mounted instead
# and named by REDLAKE_PKCS11_MODULE); bubblewrap and libseccomp for the sandbox TEE backend.
RUN apt-get update && apt-get install -y --no-install-recommends softhsm2 bubblewrap libseccomp2 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --home /app redlake && mkdir -p /var/lib/redlake && chown redlake /var/lib/redlake
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY manage.py ./
COPY dataspace ./dataspace
# the attestation verifiers the key custodian calls
COPY enclaves ./enclaves
# the built portal; collectstatic below puts it under /static/app/ for whitenoise
COPY --from=frontend /src/frontend/dist ./frontend/dist
RUN SECRET_KEY=build-only python manage.py collectstatic --no-input -v 0
USER redlake
EXPOSE 8000
CMD ["gunicorn", "dataspace.wsgi", "--config", "python:dataspace.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "4", "--worker-class", "gthread", "--threads", "4", "--timeout", "3600"]
