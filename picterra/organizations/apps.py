from django.apps import AppConfig


class OrganizationsConfig(AppConfig):
    name = "picterra.organizations"
    label = "organizations"
    verbose_name = "Organizations"
