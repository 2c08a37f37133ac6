"""Django settings, read once from environment variables (see `.env.example` for every one).

With no variables set the platform runs on its embedded defaults: a SpatiaLite file, a blob-store
folder and a Redis on a unix socket, all under `var/` (started by `make run`).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from picterra.env import env_bool, env_int, env_list, env_str
from picterra.security import loopback_only, startup_problem

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()


def _secret_key() -> str:
    """Production sets SECRET_KEY; the embedded default keeps a generated one in var/ so sessions survive restarts."""
    configured = env_str("SECRET_KEY", "")
    if configured:
        return configured
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


# The address the embedded run binds (`scripts/run.sh`, `Procfile`). Off loopback, a generated key on disk and the
# demo account's well-known password would face the network: refuse to start without explicit ones.
HOST = env_str("HOST", "127.0.0.1")
DEMO_PASSWORD = env_str("DEMO_PASSWORD", "")
_exposure_problem = startup_problem(HOST, env_str("SECRET_KEY", ""), DEMO_PASSWORD)
if _exposure_problem:
    raise ImproperlyConfigured(_exposure_problem)
SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Absolute base URL used when the server hands out links to itself (signed blob URLs, tile URLs).
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.gis",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "picterra.organizations",
    "imagery",
    "detectors",
    "picterra.public_api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before whitenoise, so static files get the headers too.
    "picterra.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "picterra.security.SignInThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "picterra.urls"
WSGI_APPLICATION = "picterra.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "picterra" / "templates"],
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

# --- Database -------------------------------------------------------------------------------
_ENGINES = {
    "postgis": "django.contrib.gis.db.backends.postgis",
    "spatialite": "picterra.db.spatialite",
}
DATABASE_URL = env_str("DATABASE_URL", f"spatialite:///{VAR_DIR / 'picterra.sqlite3'}")
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0))
_scheme = DATABASE_URL.split(":", 1)[0]
if _scheme in ("postgres", "postgresql", "pgsql"):
    _scheme = "postgis"
if _scheme not in _ENGINES:
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {_scheme!r} is not supported: use postgis://user:pass@host:port/db "
        "or spatialite:////absolute/path.sqlite3"
    )
_db["ENGINE"] = _ENGINES[_scheme]
if _scheme == "spatialite":
    Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    _db["CONN_MAX_AGE"] = 0
    # Web server, worker and beat share one SQLite file: wait on locks rather than fail at once.
    _db["OPTIONS"] = {"timeout": 30}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Blob store -----------------------------------------------------------------------------
BLOBSTORE_URL = env_str("BLOBSTORE_URL", str(VAR_DIR / "blobs"))

# --- Uploads --------------------------------------------------------------------------------
# Multipart uploads through Django are for small files; larger ones go straight to the blob store
# through a signed URL so they never sit in a request body.
MAX_MULTIPART_UPLOAD_MB = env_int("MAX_MULTIPART_UPLOAD_MB", 512, minimum=1)
MAX_UPLOAD_SIZE_GB = env_int("MAX_UPLOAD_SIZE_GB", 50, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000
FILE_UPLOAD_TEMP_DIR = None

# --- Map tiles ------------------------------------------------------------------------------
# Where TileJSON documents point their tile URLs: the separate tile server (`imagery/tile_wsgi.py`), or by
# default this server, which answers the same tile URLs.
TILE_BASE_URL = env_str("TILE_BASE_URL", PUBLIC_BASE_URL).rstrip("/")
# How long a tile server process trusts its last permission check for a (credential, image); 0 = never.
TILE_AUTH_CACHE_S = env_int("TILE_AUTH_CACHE_S", 10, minimum=0, maximum=300)

# --- Celery ---------------------------------------------------------------------------------
# The embedded default is a Redis that `make run` starts on a unix socket under var/run, so jobs
# always run in a separate worker process, never eagerly in the web process.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", f"redis+socket://{VAR_DIR / 'run' / 'redis.sock'}")
CELERY_WORKER_QUEUES = env_list("CELERY_WORKER_QUEUES", ["default", "gpu"])
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 1, minimum=1)
# CPU threads each worker process gives PyTorch: the cores shared out between the pool's processes, so
# two processes on two cores do not fight over four threads.
WORKER_TORCH_THREADS = env_int(
    "WORKER_TORCH_THREADS", max(1, (os.cpu_count() or 1) // CELERY_WORKER_CONCURRENCY), minimum=1
)
# Megabytes of freed memory each worker process keeps for its next allocations (glibc: large arrays come from
# the heap, not a fresh mmap per array): a detection cell's big arrays then reuse pages instead of faulting in
# zeroed ones (workers/freed_memory.py). A process holds about its largest task's working set between tasks;
# 0 leaves glibc's defaults (memory handed back at once).
WORKER_KEEP_FREED_MB = env_int("WORKER_KEEP_FREED_MB", 1024, minimum=0, maximum=2047)
# Where detection cells run the network: "local", in each worker process (the default); or "server", in one
# inference server process that the worker starts beside its pool (workers/tasks.py) and that owns the
# device: it batches the tiles of all the pool's cells while the pool's processes read and post-process
# (ARCHITECTURE.md, "The GPU worker"). Training always runs in the pool process.
DETECT_INFERENCE = env_str("DETECT_INFERENCE", "local")
if DETECT_INFERENCE not in ("local", "server"):
    raise ImproperlyConfigured(f"DETECT_INFERENCE={DETECT_INFERENCE!r} must be 'local' or 'server'")
INFERENCE_SERVER_SOCKET = env_str("INFERENCE_SERVER_SOCKET", str(VAR_DIR / "run" / "inference.sock"))
# A cell's request unanswered for this long fails the attempt (retried like any error): never a hang.
INFERENCE_SERVER_TIMEOUT_S = env_int("INFERENCE_SERVER_TIMEOUT_S", 300, minimum=5)
# Tiles per network call (0: 16 on a GPU, 1 on a CPU), and how long a tile waits for others to fill a batch.
INFERENCE_SERVER_BATCH_TILES = env_int("INFERENCE_SERVER_BATCH_TILES", 0, minimum=0)
INFERENCE_SERVER_WAIT_MS = env_int("INFERENCE_SERVER_WAIT_MS", 20, minimum=0, maximum=10_000)
# Tile side the server asks for (0: the recipe's ``predict_tile``); larger on a GPU wastes less on overlaps.
INFERENCE_SERVER_TILE = env_int("INFERENCE_SERVER_TILE", 0, minimum=0)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task not acknowledged within this time is delivered again (worker died mid-task).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 3600, minimum=10),
    # Look for such orphaned tasks at every restore tick (10 s), not every tenth: a cheap Redis query.
    "unacked_restore_throttle": 1,
    # Lets several deployments (or test runs) share one Redis without taking each other's jobs.
    "global_keyprefix": env_str("CELERY_BROKER_KEY_PREFIX", ""),
}
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT_S", 3000, minimum=10)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
# Wall-clock budget of one training run (the ML core stops early when converged).
TRAINING_TIME_BUDGET_S = env_int("TRAINING_TIME_BUDGET_S", 60, minimum=5)
# Views of each tile a detector trained on a GPU averages (test-time augmentation, workers.ml.config.default_recipe):
# 8 gained +0.031 F1 on real imagery for 8x the network's work at detection; 1, 2 or 4 trade it back for speed.
# Detectors trained on CPU always use 1; a trained detector keeps its own.
GPU_TTA = env_int("GPU_TTA", 8, minimum=1)
if GPU_TTA not in (1, 2, 4, 8):
    raise ImproperlyConfigured(f"GPU_TTA={GPU_TTA} must be 1, 2, 4 or 8")
# Trainings that may use a GPU machine's device at once (workers/gpu_slots.py): the others wait for a slot, so
# each training's time budget is spent on the device rather than on a fraction of it. CPU workers ignore it.
GPU_TRAINING_SLOTS = env_int("GPU_TRAINING_SLOTS", 1, minimum=1, maximum=64)
# Side of a detection grid cell in pixels: each cell is one retryable job.
DETECTION_CELL_SIZE = env_int("DETECTION_CELL_SIZE", 2048, minimum=256)
DETECTION_CELL_ATTEMPTS = env_int("DETECTION_CELL_ATTEMPTS", 3, minimum=1)
# Jobs whose row has not moved for this long are re-queued (their message may be lost) or, once their
# attempts are spent, failed by the periodic sweeper.
STALE_JOB_TIMEOUT_S = env_int("STALE_JOB_TIMEOUT_S", 3600, minimum=60)
# A running training row whose heartbeat (written every few seconds) is older than this belongs to a
# dead worker, and a redelivered task may take it over. Keep it below CELERY_VISIBILITY_TIMEOUT_S.
JOB_HEARTBEAT_STALE_S = env_int("JOB_HEARTBEAT_STALE_S", 120, minimum=5)
# How often a working job moves its heartbeat (updated_at for images) in long phases without progress.
JOB_HEARTBEAT_EVERY_S = max(1.0, JOB_HEARTBEAT_STALE_S / 4)
# Attempts a job may start before it is failed: a file or a run that kills its worker every time (out of
# memory) is redelivered at once (acks_late + reject_on_worker_lost); these bound that loop. Counted when
# the job is claimed, so a killed worker counts.
INGEST_MAX_ATTEMPTS = env_int("INGEST_MAX_ATTEMPTS", 3, minimum=1)
TRAINING_MAX_ATTEMPTS = env_int("TRAINING_MAX_ATTEMPTS", 3, minimum=1)
DETECTION_FINISH_ATTEMPTS = env_int("DETECTION_FINISH_ATTEMPTS", 3, minimum=1)
# A worker that loses the broker finishes the tasks in hand (the database records their outcome); the
# messages of those tasks may be gone with a restarted broker, which the sweeper covers.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "picterra.organizations.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("API_PAGE_SIZE", 50, minimum=1, maximum=1000),
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "picterra.api.exception_handler",
    # JSON nested too deeply for the decoder is a 400, not a RecursionError (a 500).
    "DEFAULT_PARSER_CLASSES": [
        "picterra.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Requests made with an API key are throttled per key (429 with Retry-After); see API_KEY_THROTTLE_RATE.
    "DEFAULT_THROTTLE_CLASSES": ["picterra.organizations.throttling.ApiKeyRateThrottle"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# Requests per API key, as "<number>/<second|minute|hour|day>" (counted in the Django cache).
API_KEY_THROTTLE_RATE = env_str("API_KEY_THROTTLE_RATE", "600/minute")
# Shared counters (API key throttling, failed sign-ins): Redis when CACHE_URL is set (`make run` points it at its
# embedded Redis), else memory of each process, which several gunicorn workers would each count alone.
CACHE_URL = env_str("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Page size of the public API's lists (`/public/api/v2/`, pages chosen with `page_number`).
PUBLIC_API_PAGE_SIZE = env_int("PUBLIC_API_PAGE_SIZE", 20, minimum=1, maximum=1000)
# Seconds the official client waits between two polls of an operation.
PUBLIC_API_POLL_INTERVAL_S = env_int("PUBLIC_API_POLL_INTERVAL_MS", 2000, minimum=10, maximum=60_000) / 1000
SPECTACULAR_SETTINGS = {
    "TITLE": "Groundcount API",
    "DESCRIPTION": "Train object detectors on aerial imagery from a few labels and run them over whole images.",
    "VERSION": "1.0.0",
    # /api/schema/ documents /api/v1/ only; the public API has its own at /public/api/v2/schema/.
    "PREPROCESSING_HOOKS": ["picterra.api.schema.only_api_v1"],
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI assets are served by the platform itself: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
# After sign-in: the web app when it is built (frontend/dist), else the server-rendered project list.
LOGIN_REDIRECT_URL = "/app/" if (BASE_DIR / "frontend" / "dist").is_dir() else "/"
LOGOUT_REDIRECT_URL = "/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Nothing is served as "media" (uploads live in the blob store). Set only so that no server, Django's test
# live server included, treats every path as a media file: with MEDIA_URL empty it serves the working
# directory's files and answers encoded traversal paths with a 500.
MEDIA_URL = "/media/"
MEDIA_ROOT = VAR_DIR / "media"
# The built web app (frontend/dist, made by `npm run build`) is served under /static/app/; without a build
# the backend runs as before and /app/ says how to build it.
FRONTEND_DIST = BASE_DIR / "frontend" / "dist"
# The server-rendered pages' stylesheet and the favicon (picterra/static/picterra/), with or without the web app.
STATICFILES_DIRS = [BASE_DIR / "picterra" / "static", *([("app", FRONTEND_DIST)] if FRONTEND_DIST.is_dir() else [])]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Security (see picterra/security.py) ----------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
# Behind a proxy that terminates TLS: "HTTP_X_FORWARDED_PROTO,https" makes requests it marks secure count as
# HTTPS (HSTS, secure redirects). Set it only when that proxy always overwrites the header.
_ssl_header = env_list("SECURE_PROXY_SSL_HEADER", [])
if _ssl_header and len(_ssl_header) != 2:
    raise ImproperlyConfigured(
        "Environment variable SECURE_PROXY_SSL_HEADER must be a header and a value, e.g. HTTP_X_FORWARDED_PROTO,https."
    )
SECURE_PROXY_SSL_HEADER = tuple(_ssl_header) if _ssl_header else None
# Cookies only over HTTPS, except on a server nobody else reaches (`make run` on http://127.0.0.1) or in DEBUG.
_cookies_secure = not DEBUG and not loopback_only(HOST, PUBLIC_BASE_URL)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _cookies_secure)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SESSION_COOKIE_SECURE)
# Sent only on HTTPS responses (Django's SecurityMiddleware); 0 turns HSTS off.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Failed sign-ins (per username, per address) and wrong API keys (per address) within the window, before 429.
AUTH_FAILURE_LIMIT_PER_USERNAME = env_int("AUTH_FAILURE_LIMIT_PER_USERNAME", 10, minimum=1)
AUTH_FAILURE_LIMIT_PER_IP = env_int("AUTH_FAILURE_LIMIT_PER_IP", 50, minimum=1)
AUTH_FAILURE_WINDOW_S = env_int("AUTH_FAILURE_WINDOW_S", 900, minimum=1)
# Proxies in front of the server that append to X-Forwarded-For (0: the client is REMOTE_ADDR).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=5)

# GDAL < 3.9 cannot block file access from spatial references. Django's GDAL only ever parses
# GeoJSON that picterra/api/fields.py rebuilds from bare coordinates (no "crs" member), so no
# user-supplied spatial reference reaches it.
SILENCED_SYSTEM_CHECKS = ["gis.W001"]

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
