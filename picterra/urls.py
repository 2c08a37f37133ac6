from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from imagery.tile_views import ImageTileJSON
from imagery.views import signed_blob
from picterra import frontend_views, health, views
from picterra.public_api.schema_urls import PUBLIC_SCHEMA
from picterra.public_api.urls import urlpatterns as public_api_urls

admin.site.site_header = admin.site.site_title = "Groundcount administration"

api_v1 = [
    path("", include("picterra.organizations.api.urls")),
    path("", include("imagery.api.urls")),
    path("", include("detectors.api.urls")),
    path("images/<uuid:image_id>/tilejson.json", ImageTileJSON.as_view(), name="image-tilejson"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("app/", frontend_views.app, name="app"),
    path("app/<path:path>", frontend_views.app, name="app-path"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: the Content-Security-Policy allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # Public API v2, for the official `picterra` client (a translation layer over the same models and jobs).
    path(
        "public/api/v2/schema/",
        SpectacularAPIView.as_view(urlconf="picterra.public_api.schema_urls", custom_settings=PUBLIC_SCHEMA),
        name="public-schema",
    ),
    path("public/api/v2/", include((public_api_urls, "public_api"), namespace="public")),
    path("api-auth/", include("rest_framework.urls")),
    path("blobs/<path:key>", signed_blob, name="signed-blob"),
    path("", include("imagery.tile_urls")),
]
