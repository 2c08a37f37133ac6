"""The database state every platform benchmark starts from: migrated, one user owning one project."""

from __future__ import annotations


def create_bench_account():
    """Migrate the (new, empty) database and return (user, organization, project)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from picterra.organizations.models import Membership, Organization, Project

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password="bench-password")
    organization = Organization.objects.create(name="Bench")
    Membership.objects.create(organization=organization, user=user, role=Membership.Role.OWNER)
    project = Project.objects.create(organization=organization, name="Bench", created_by=user)
    return user, organization, project
