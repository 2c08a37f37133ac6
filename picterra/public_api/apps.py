from django.apps import AppConfig


class PublicApiConfig(AppConfig):
    name = "picterra.public_api"
    label = "public_api"
    verbose_name = "Public API v2"
