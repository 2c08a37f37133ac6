"""Create (once) the demo account, organization, project, sample image and detector, and print how to sign in.

The account's password and rights follow ``picterra.security.demo_account_policy``: ``demo-password`` and admin
rights only when the server is loopback-only (``HOST`` and ``PUBLIC_BASE_URL`` on 127.0.0.1/localhost/::1);
otherwise ``DEMO_PASSWORD`` or a random password printed once, and an ordinary account.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from detectors.models import Detector, DetectorClass, DetectorImage
from imagery.ingest import enqueue_ingest
from imagery.models import Image
from imagery.sample import write_sample_geotiff
from imagery.storage import get_blob_store, image_original_key
from picterra.organizations.models import Membership, Organization, Project
from picterra.security import DEFAULT_DEMO_PASSWORD, demo_account_policy

DEMO_USERNAME = "demo"
DEMO_PROJECT = "Demo project"


class Command(BaseCommand):
    help = "Create the demo account and project (idempotent) and print the credentials."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="", help="Default: DEMO_PASSWORD, else as the server's HOST allows.")
        parser.add_argument("--no-image", action="store_true", help="Skip generating and ingesting the sample image.")

    @transaction.atomic
    def handle(self, *args, password: str, no_image: bool, **options):
        policy = demo_account_policy(settings.HOST, settings.PUBLIC_BASE_URL, password or settings.DEMO_PASSWORD)
        user, created = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME,
            defaults={"is_staff": policy.superuser, "is_superuser": policy.superuser, "email": "demo@example.org"},
        )
        # An account made by an earlier loopback-only run keeps neither its well-known password nor admin rights
        # once other machines can reach the server.
        local = policy.superuser
        reset = created or (not local and user.check_password(DEFAULT_DEMO_PASSWORD))
        if reset:
            user.set_password(policy.password)
        if reset or (not local and (user.is_staff or user.is_superuser)):
            user.is_staff = user.is_superuser = local
            user.save()
        organization = Organization.objects.filter(memberships__user=user, name="Demo organization").first()
        if organization is None:
            organization = Organization.objects.create(name="Demo organization")
            Membership.objects.create(organization=organization, user=user, role=Membership.Role.OWNER)
        project, _ = Project.objects.get_or_create(
            organization=organization,
            name=DEMO_PROJECT,
            defaults={"description": "A generated orthophoto with trees to try the platform on.", "created_by": user},
        )
        detector, detector_created = Detector.objects.get_or_create(
            organization=organization, project=project, name="Trees", defaults={"created_by": user}
        )
        if detector_created:
            DetectorClass.objects.create(detector=detector, name="tree", color="#2E7D32")
        if not no_image and not project.images.exists():
            image = self._sample_image(project, user)
            DetectorImage.objects.get_or_create(detector=detector, image=image)
        if reset or not policy.generated:
            shown = policy.password if user.check_password(policy.password) else "(changed since it was created)"
        else:
            shown = "(the random one printed when it was created)"
        note = "" if policy.superuser else " (not an administrator: create one with `manage.py createsuperuser`)"
        self.stdout.write(f"Demo account: username '{DEMO_USERNAME}', password '{shown}'{note}")

    def _sample_image(self, project: Project, user) -> Image:
        image = Image(
            project=project,
            name="Sample orthophoto (generated)",
            created_by=user,
            original_filename="sample.tif",
            status=Image.Status.UPLOADED,
        )
        image.original_key = image_original_key(image.pk, "sample.tif")
        with tempfile.TemporaryDirectory() as tmp:
            sample = write_sample_geotiff(Path(tmp) / "sample.tif", size=2048, trees=120)
            image.file_size = sample.path.stat().st_size
            get_blob_store().put_file(image.original_key, sample.path)
        image.save()
        enqueue_ingest(image)
        return image
