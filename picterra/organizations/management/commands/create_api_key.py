"""`python manage.py create_api_key USERNAME`: an API key for scripts and integrations, from the shell.

Operators use it to hand a key to an integration without the web UI. The user (without a password: it
signs in with the key only) and a personal organisation are created when missing. The key is printed
alone on the last line, so `KEY=$(python manage.py create_api_key bot | tail -n 1)` works.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from picterra.organizations.models import ApiKey, Membership, Organization


class Command(BaseCommand):
    help = "Create an API key for USERNAME (and the user and a personal organisation when missing)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label for the key, e.g. the integration using it.")
        parser.add_argument(
            "--organization",
            default="",
            help="Name or id of the organisation the key is listed under (its owners can revoke it); needed "
            "when the user belongs to several. The key acts with the user's own access.",
        )

    @transaction.atomic
    def handle(self, *args, username: str, name: str, organization: str, **options) -> None:
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            self.stdout.write(f"Created user {username}.")
        if not user.is_active:
            raise CommandError(f"User {username} is deactivated; reactivate it before giving it a key.")
        memberships = Membership.objects.filter(user=user).select_related("organization")
        if organization:
            chosen = [
                m.organization for m in memberships if organization in (m.organization.name, str(m.organization.pk))
            ]
            if len(chosen) != 1:
                names = ", ".join(sorted(m.organization.name for m in memberships)) or "none"
                raise CommandError(f"{username} is not a member of one organisation called {organization!r} ({names}).")
            target = chosen[0]
        elif not memberships:
            target = Organization.objects.create(name=f"{username}'s organisation")
            Membership.objects.create(organization=target, user=user, role=Membership.Role.OWNER)
            self.stdout.write(f"Created organisation {target.name!r} owned by {username}.")
        elif len(memberships) == 1:
            target = memberships[0].organization
        else:
            names = ", ".join(sorted(m.organization.name for m in memberships))
            raise CommandError(
                f"{username} belongs to several organisations ({names}): choose one with --organization."
            )
        key, raw = ApiKey.issue(user, target, name=name)
        self.stdout.write(f"API key {key.prefix}… for {username} in {target.name!r}; send it as X-Api-Key. Shown once:")
        self.stdout.write(raw)
