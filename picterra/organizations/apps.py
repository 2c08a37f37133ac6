from django.apps import AppConfig


class OrganizationsConfig(AppConfig):
    name = "picterra.organizations"
    label = "organizations"
    verbose_name = "Organizations"

    def ready(self) -> None:
        """Every sign-in form (ours, the admin's, the browsable API's) feeds the failed sign-in counters."""
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from picterra import security

        user_login_failed.connect(security.on_user_login_failed, dispatch_uid="picterra-count-failed-sign-in")
        user_logged_in.connect(security.on_user_logged_in, dispatch_uid="picterra-forget-failed-sign-ins")
