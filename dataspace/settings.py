"""Redlake settings: one module, driven by the environment.

Defaults are the embedded ones (SQLite, the kombu SQLAlchemy broker on a SQLite file, blobs
under ``var/``) and are safe for development only. Production sets at least ``SECRET_KEY``,
``DATABASE_URL``, ``CELERY_BROKER_URL``, ``ALLOWED_HOSTS`` and a key-encryption key source
(``VAULT_KEK``); see the README.
"""

from datetime import timedelta
from pathlib import Path

import django_stubs_ext
import environ

# Lets admin and serializer classes be subscripted at run time, as the type stubs expect.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env.str("REDLAKE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)
# ISSUE-12 custody: the one job this process does (dataspace.roles.Role); compose sets it per
# service, and code that holds a key refuses to run in any other role (dataspace.role_checks).
REDLAKE_ROLE = env.str("REDLAKE_ROLE", default="dev")
# A fixed development key is only acceptable because DEBUG-less production must set its own:
# check --deploy rejects this value's prefix.
SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-redlake-development-only")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "dataspace.accounts",
    "dataspace.vault",
    "dataspace.catalog",
    "dataspace.chain",
    "dataspace.privacy",
    "dataspace.policies",
    "dataspace.compute",
    "dataspace.audit",
    "dataspace.portal",
    "dataspace.demo",
    "django_prometheus",  # ISSUE-14: request, database and cache metrics at /metrics
]

MIDDLEWARE = [
    "dataspace.observability.logs.RequestContextMiddleware",  # ISSUE-14: request ids in every log line
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # ISSUE-14
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",  # ISSUE-14
]

ROOT_URLCONF = "dataspace.urls"
WSGI_APPLICATION = "dataspace.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "portal:login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "dataspace" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'redlake.sqlite3'}"),
}
# ISSUE-14: persistent connections: opening one per request cost ~14 ms of a 25 ms catalogue read
# on PostgreSQL (bench/load.py). Health checks replace a connection the server dropped (a
# restart) before a request or task uses it.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # ISSUE-14: Django's backend with a health check that needs no round trip and a prepared
    # statement for the token check (dataspace/postgres/base.py).
    DATABASES["default"]["ENGINE"] = "dataspace.postgres"
    if env.bool("DB_PREPARED_STATEMENTS", default=True):
        # Only server-side binding cursors prepare, and only ``prepared_cursor()`` makes them: there
        # psycopg prepares a statement on its first execution. Django's own statements bind
        # client-side and stay unprepared, as Django ships them.
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so a real Celery worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-redlake.sqlite3")}
    # ISSUE-14: WAL mode (kept in the file; setting it again is a no-op). With the rollback journal
    # every commit synced the file and its journal; in WAL mode it appends to the log and syncs
    # that once, and readers no longer wait for a writer: starting and running a 300 KB ingest
    # (four commits) took 26.4 ms before, 17-20 ms after. synchronous stays FULL, so a commit
    # survives a power cut.
    # SQLite discards a log left beside a database file that is new or empty, so deleting the file
    # (a test database, var/) leaves nothing to replay.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ISSUE-14: the catalogue's rendered answers, per process, keyed by the catalogue's state
# (dataspace/catalog/catalogue_cache.py): a change is seen by the next read without invalidation.
CATALOGUE_CACHE_SECONDS = env.float("CATALOGUE_CACHE_SECONDS", default=10.0)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "catalogue": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "catalogue",
        "OPTIONS": {"MAX_ENTRIES": 2000},
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# ISSUE-15: the React portal (frontend/, built by Vite with base /static/app/) is collected with the
# other static files; whitenoise serves it, Django serves only its index page (dataspace.portal).
FRONTEND_DIST = Path(env.str("FRONTEND_DIST", default=str(BASE_DIR / "frontend" / "dist")))
STATICFILES_DIRS = [("app", FRONTEND_DIST)] if FRONTEND_DIST.is_dir() else []

# Blob storage: local directory by default, any django-storages backend in production
# (e.g. STORAGE_BACKEND=storages.backends.s3.S3Storage plus the AWS_* variables it reads).
BLOB_ROOT = Path(env.str("BLOB_ROOT", default=str(VAR_DIR / "blobs")))
STORAGES = {
    "default": {
        "BACKEND": env.str("STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"),
        "OPTIONS": {"location": str(BLOB_ROOT)}
        if "FileSystemStorage" in env.str("STORAGE_BACKEND", default="FileSystemStorage")
        else {},
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# ISSUE-12: the process's role and the keyrings it holds (dataspace/roles.py, README "Keys").
# REDLAKE_KEYRING_<NAME> (DATA, CKKS, WALLET, RECEIPT) gives a keyring's private half:
# "file:<dir>", "env:<VAR>" or "pkcs11:token=<label>;label=<key label>[;module=..][;pin-env=..]";
# REDLAKE_KEYRING_<NAME>_PUBLIC its public half alone (a PEM file or "env:<VAR>"), enough to seal.
# VAULT_KEK is the development shorthand for all four ("file:<dir>" -> <dir>/<keyring>); the
# dev role defaults to it under var/, every other role holds only what it is given. A role
# given a keyring outside roles.ALLOWED_KEYRINGS refuses to start.
VAULT_KEK = env.str("VAULT_KEK", default=f"file:{VAR_DIR / 'keys'}" if REDLAKE_ROLE == "dev" else "")
VAULT_CHUNK_SIZE = env.int("VAULT_CHUNK_SIZE", default=1024 * 1024)

# Uploads stream into the vault as they arrive; nothing plaintext is spooled to disk.
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=2 * 1024**3)
FILE_UPLOAD_HANDLERS: list[str] = []  # set per view: only the vault handler may receive a file
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# The JSON door (dataspace.parsers): API bodies are small documents; nothing the API takes nests
# deeper than a few levels, and a bound far below the interpreter's recursion limit keeps a
# hostile body from ever reaching a recursive parser.
API_JSON_MAX_BYTES = env.int("API_JSON_MAX_BYTES", default=1024 * 1024)
API_JSON_MAX_DEPTH = env.int("API_JSON_MAX_DEPTH", default=32)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "dataspace.accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "dataspace.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # The API speaks JSON, bounded in size and depth; the upload endpoint names its own parser.
    "DEFAULT_PARSER_CLASSES": ["dataspace.parsers.BoundedJSONParser"],
    # DRF would read ?format= as a renderer choice (a 404 for any value but "json"); here it is the
    # catalogue's file-format filter, and the one renderer needs no choosing.
    "URL_FORMAT_OVERRIDE": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_THROTTLE_RATES": {"anon": env.str("ANON_THROTTLE_RATE", default="60/min")},
}

REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env.int("API_TOKEN_TTL_HOURS", default=24 * 30)),
    "AUTO_REFRESH": False,
    "TOKEN_LIMIT_PER_USER": 20,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Redlake API",
    "DESCRIPTION": "Trusted data space: browse the catalogue, manage datasets, run permitted "
    'computations. Errors are {"error": {"code", "message", "details"}}.',
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Serve Swagger UI's assets ourselves: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "dataspace.api_docs.document_json_door",
    ],
}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=f"sqla+sqlite:///{VAR_DIR / 'broker.sqlite3'}")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "dataspace.catalog.tasks.ingest_dataset": {"queue": "ingest"},
    "dataspace.chain.tasks.*": {"queue": "chain"},
    "dataspace.catalog.tasks.register_datasets_on_chain": {"queue": "chain"},
    # ISSUE-12: the registry follow-ups write to the chain.
    "dataspace.catalog.tasks.follow_dataset_metadata": {"queue": "chain"},
    "dataspace.catalog.tasks.retire_dataset": {"queue": "chain"},
    "dataspace.catalog.tasks.sweep_dataset_registry": {"queue": "chain"},
    "dataspace.policies.tasks.follow_*": {"queue": "chain"},
    "dataspace.privacy.tasks.follow_*": {"queue": "chain"},
    "dataspace.compute.tasks.authorise_job": {"queue": "chain"},
    "dataspace.compute.tasks.settle_job": {"queue": "chain"},
    "dataspace.compute.tasks.refund_job": {"queue": "chain"},
    # ISSUE-14: settlement batches are built and followed by the chain signer.
    "dataspace.compute.tasks.flush_settlement_batches": {"queue": "chain"},
    "dataspace.compute.tasks.follow_settlement_batch": {"queue": "chain"},
    "dataspace.compute.tasks.compute_job": {"queue": "he"},
    "dataspace.compute.tasks.release_job": {"queue": "custody"},
    # ISSUE-13: tee jobs run in the sandbox on ``tee``; algorithm approvals are chain writes.
    "dataspace.compute.tasks.compute_tee_job": {"queue": "tee"},
    "dataspace.compute.tasks.follow_algorithm": {"queue": "chain"},
    "dataspace.compute.tasks.build_encrypted_store": {"queue": "ingest"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A cold shutdown (SIGQUIT; SIGTERM under `make run`, see the Procfile) gives running tasks this
# long before handing them back to the broker. 0: at once.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = env.float("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", default=0.0)
# On Redis an unacknowledged task is redelivered after this; it must exceed the longest task.
# (kombu's SQLAlchemy transport hands its options to create_engine, so only Redis gets them.)
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=4 * 3600)}
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else {}
)
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-ingests": {"task": "dataspace.catalog.tasks.requeue_stale_ingests", "schedule": 60.0},
    "register-datasets-on-chain": {"task": "dataspace.catalog.tasks.register_datasets_on_chain", "schedule": 60.0},
    # ISSUE-12: metadata edits (updateFor) and deletions (retireFor) nobody carried to the registry.
    "sweep-dataset-registry": {"task": "dataspace.catalog.tasks.sweep_dataset_registry", "schedule": 60.0},
    "sweep-chain-writes": {"task": "dataspace.chain.tasks.sweep_chain_writes", "schedule": 30.0},
    "index-chain-events": {"task": "dataspace.chain.tasks.index_chain_events", "schedule": 5.0},
    "sweep-jobs": {"task": "dataspace.compute.tasks.sweep_jobs", "schedule": 30.0},
    "sweep-dataset-privacy-terms": {"task": "dataspace.privacy.tasks.sweep_dataset_terms", "schedule": 60.0},
    "reconcile-chain": {"task": "dataspace.audit.tasks.reconcile_chain", "schedule": 600.0},
    "sweep-encrypted-stores": {"task": "dataspace.compute.tasks.sweep_encrypted_stores", "schedule": 60.0},
    "sweep-policy-followups": {"task": "dataspace.policies.tasks.sweep_policy_followups", "schedule": 60.0},
}
EMBEDDED_BROKER_POLLING_INTERVAL = env.float("EMBEDDED_BROKER_POLLING_INTERVAL", default=0.1)
# ISSUE-14: and this often for half a second after a message came, while a job's steps follow one
# another (dataspace/embedded_broker.py).
EMBEDDED_BROKER_BUSY_POLLING_INTERVAL = env.float("EMBEDDED_BROKER_BUSY_POLLING_INTERVAL", default=0.02)
EMBEDDED_BROKER_BUSY_SECONDS = env.float("EMBEDDED_BROKER_BUSY_SECONDS", default=0.5)

# An ingest message lost by the broker, or a worker killed mid-ingest, is re-sent after these.
INGEST_REQUEUE_QUEUED_AFTER = env.int("INGEST_REQUEUE_QUEUED_AFTER", default=120)
INGEST_REQUEUE_RUNNING_AFTER = env.int("INGEST_REQUEUE_RUNNING_AFTER", default=1800)
# The same for encrypted-store builds: never started this long after the dataset appeared, or
# started longer ago than any build takes (1M rows x 10 columns build in under a minute).
STORE_BUILD_REQUEUE_QUEUED_AFTER = env.int("STORE_BUILD_REQUEUE_QUEUED_AFTER", default=120)
STORE_BUILD_REQUEUE_RUNNING_AFTER = env.int("STORE_BUILD_REQUEUE_RUNNING_AFTER", default=1800)

# Chain. The defaults are anvil's: chain 31337 and its first well-known development key, which
# production must replace (a system check refuses it outside DEBUG on any other chain).
CHAIN_RPC_URL = env.str("CHAIN_RPC_URL", default="http://127.0.0.1:8545")
# ISSUE-12: the RPC URL GET /api/space/ gives auditors (a read-only public endpoint in
# production; the node itself stays on the internal network). Default: the node's URL.
CHAIN_PUBLIC_RPC_URL = env.str("CHAIN_PUBLIC_RPC_URL", default="")  # empty: the node the platform uses (CHAIN_RPC_URL)
# ISSUE-12: where TEE jobs run: "sandbox" (bubblewrap + seccomp, evidence labelled SIMULATED) or a
# hardware type (nitro, sgx, tdx, sev-snp); GET /api/space/ tells consumers which.
TEE_BACKEND = env.str("TEE_BACKEND", default="sandbox")
# ISSUE-13: the sandbox backend's bubblewrap, and its pool of sandboxes started ahead of their jobs
# in each process that runs tee tasks: TEE_POOL_SIZE per approved algorithm (0: every job starts
# its own), for the TEE_POOL_MAX_ALGORITHMS most recently approved; approvals re-read (revoked ones
# drained) every TEE_POOL_REFRESH_SECONDS.
TEE_BWRAP = env.str("TEE_BWRAP", default="bwrap")
TEE_POOL_SIZE = env.int("TEE_POOL_SIZE", default=1)
TEE_POOL_MAX_ALGORITHMS = env.int("TEE_POOL_MAX_ALGORITHMS", default=8)
TEE_POOL_REFRESH_SECONDS = env.float("TEE_POOL_REFRESH_SECONDS", default=2.0)
CHAIN_RPC_TIMEOUT = env.float("CHAIN_RPC_TIMEOUT", default=10.0)
CHAIN_ID = env.int("CHAIN_ID", default=31337)
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
CHAIN_OPERATOR_KEY = env.str("CHAIN_OPERATOR_KEY", default=ANVIL_DEV_KEY)
# ISSUE-12 custody: the operator's public address, for the roles that queue chain writes but do
# not hold CHAIN_OPERATOR_KEY (only the chain signer does); empty: derived from the key.
CHAIN_OPERATOR_ADDRESS = env.str("CHAIN_OPERATOR_ADDRESS", default="")
CHAIN_CONFIRMATIONS = env.int("CHAIN_CONFIRMATIONS", default=0)
CHAIN_POLL_SECONDS = env.float("CHAIN_POLL_SECONDS", default=1.0)
# ISSUE-14: a step that has just broadcast a write waits for its receipt in the task (asking the
# node every CHAIN_RECEIPT_POLL_SECONDS, at most CHAIN_RECEIPT_WAIT_SECONDS) before falling back
# to a retry after CHAIN_POLL_SECONDS: anvil mines at once, so a job no longer waits a poll a step.
CHAIN_RECEIPT_WAIT_SECONDS = env.float("CHAIN_RECEIPT_WAIT_SECONDS", default=2.0)
CHAIN_RECEIPT_POLL_SECONDS = env.float("CHAIN_RECEIPT_POLL_SECONDS", default=0.02)
CHAIN_SWEEP_AFTER = env.int("CHAIN_SWEEP_AFTER", default=30)
CHAIN_INDEXER_CHUNK = env.int("CHAIN_INDEXER_CHUNK", default=2000)
CONTRACTS_OUT_DIR = Path(env.str("CONTRACTS_OUT_DIR", default=str(BASE_DIR / "contracts" / "out")))

# Jobs and the key custodian. A job nobody moved for JOB_SWEEP_AFTER seconds gets its next step
# re-sent. CUSTODIAN_KEY signs release receipts (hex private key); empty: a key file in VAR_DIR.
JOB_SWEEP_AFTER = env.int("JOB_SWEEP_AFTER", default=60)
# ISSUE-14: settlement in batches. SETTLE_BATCH_SIZE 1 settles every job alone as soon as it is
# released (lowest latency). Above 1, a released job of an unmetered offer waits for a batch:
# `settleBatch` over up to SETTLE_BATCH_SIZE jobs under one Merkle root, sent when the batch is
# full or when its oldest job has waited SETTLE_BATCH_WAIT_SECONDS (gas per job falls with the
# batch, latency grows by at most the wait). Metered jobs always settle alone.
SETTLE_BATCH_SIZE = env.int("SETTLE_BATCH_SIZE", default=1)
SETTLE_BATCH_WAIT_SECONDS = env.float("SETTLE_BATCH_WAIT_SECONDS", default=2.0)
# ISSUE-13: a tee job no worker able to sandbox has taken (none runs, or every one refused the
# queue on an unfit host) is failed and refunded after this long, rather than waiting for ever.
TEE_UNCLAIMED_AFTER = env.int("TEE_UNCLAIMED_AFTER", default=900)
CUSTODIAN_KEY = env.str("CUSTODIAN_KEY", default="")
# ISSUE-12: with no CUSTODIAN_KEY, the receipt key lives sealed to the receipt keyring here.
RECEIPT_KEY_FILE = Path(env.str("RECEIPT_KEY_FILE", default=str(VAR_DIR / "receipt-key.sealed")))
# ISSUE-12: the custodian's receipt address (public) for `chain deploy` to register in
# CustodianRegistry where the deploying process does not hold the receipt key; empty: asked of
# the process's own receipt key (development).
CUSTODIAN_ADDRESS = env.str("CUSTODIAN_ADDRESS", default="")

# Differential privacy (docs/privacy.md). Every personal dataset allows at most its provider's
# declared epsilon in all (default below), accounted in zCDP and converted to (epsilon, delta) at
# this delta, far below 1/rows for any dataset the platform stores.
PRIVACY_DELTA = env.float("PRIVACY_DELTA", default=1e-9)
PRIVACY_DEFAULT_DATASET_EPSILON = env.float("PRIVACY_DEFAULT_DATASET_EPSILON", default=1.0)
PRIVACY_MAX_DATASET_EPSILON = env.float("PRIVACY_MAX_DATASET_EPSILON", default=10.0)
# The share of a personal dataset's budget its store build may spend estimating the bounds and
# bucket edges its provider did not declare (only when the upload asks: "estimate_missing").
PRIVACY_INGEST_ESTIMATE_SHARE = env.float("PRIVACY_INGEST_ESTIMATE_SHARE", default=0.05)

CATALOG_BASE_URI = env.str("CATALOG_BASE_URI", default="http://localhost:8000")

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    # TLS usually ends at a proxy in front of gunicorn; production turns these on (see
    # docker-compose.yml), and `check --deploy` fails until it does.
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    # Container health checks and scrapers speak plain HTTP. ISSUE-14: readyz, metrics.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# ISSUE-14: /metrics answers loopback callers (METRICS_ALLOW_LOOPBACK) and, when METRICS_TOKEN is
# set, callers sending "Authorization: Bearer <token>"; everyone else gets a 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOW_LOOPBACK = env.bool("METRICS_ALLOW_LOOPBACK", default=True)
# ISSUE-14: JSON lines (structlog) carrying request, task, job and user ids, never a value;
# LOG_FORMAT=console for text a person reads (dataspace.observability.logs).
from dataspace.observability.logs import logging_config as _logging_config  # noqa: E402

LOGGING = _logging_config(
    level=env.str("LOG_LEVEL", default="INFO"), json_lines=env.str("LOG_FORMAT", default="json") != "console"
)

# ISSUE-12: the keyrings this process holds, refused at startup where its role may not hold them.
from dataspace import roles as _roles  # noqa: E402

REDLAKE_KEYRINGS = {k.value: env.str(f"REDLAKE_KEYRING_{k.name}", default="") for k in _roles.Keyring}
REDLAKE_KEYRINGS_PUBLIC = {k.value: env.str(f"REDLAKE_KEYRING_{k.name}_PUBLIC", default="") for k in _roles.Keyring}
_held = {
    k: setting for k, (_, setting) in _roles.held_keyring_specs(explicit=REDLAKE_KEYRINGS, vault_kek=VAULT_KEK).items()
}
if CUSTODIAN_KEY:
    _held.setdefault(_roles.Keyring.RECEIPT, "CUSTODIAN_KEY")
_roles.refuse_foreign_keyrings(role=REDLAKE_ROLE, held=_held)
