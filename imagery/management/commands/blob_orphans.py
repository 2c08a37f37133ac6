"""List (and with --delete remove) blobs that no row owns: what crashes, races and old bugs left behind."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from imagery.purge import ORPHAN_MIN_AGE_S, find_orphans
from imagery.storage import get_blob_store


def _size(count: int, size: int) -> str:
    return f"{count} blob{'' if count == 1 else 's'}, {size:,} bytes"


class Command(BaseCommand):
    help = (
        "Report blobs under the known folders (images/, training-runs/, detection-runs/, public-api/…) whose "
        "row no longer exists; --delete removes them. Blobs younger than --min-age are left alone (an upload "
        "writes its file before its row is committed), and keys outside the known folders are only counted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--delete", action="store_true", help="Remove the orphaned blobs found.")
        parser.add_argument(
            "--min-age",
            type=float,
            default=ORPHAN_MIN_AGE_S,
            metavar="SECONDS",
            help=f"Ignore blobs written less than this long ago (default {ORPHAN_MIN_AGE_S}).",
        )

    def handle(self, *args, delete: bool, min_age: float, **options) -> None:
        if min_age < 0:
            self.stderr.write("--min-age must be zero or more seconds.")
            raise SystemExit(2)
        store = get_blob_store()
        report = find_orphans(store, min_age_s=min_age)
        for namespace, infos in sorted(report.orphans.items()):
            self.stdout.write(f"orphaned under {namespace}: {_size(len(infos), sum(i.size for i in infos))}")
            if options["verbosity"] >= 2:
                for info in infos:
                    self.stdout.write(f"  {info.key}")
        orphans = report.orphan_blobs
        self.stdout.write(f"orphaned in total: {_size(len(orphans), sum(i.size for i in orphans))}")
        self.stdout.write(f"owned by a row: {report.owned} blobs")
        self.stdout.write(f"too recent to judge (< {min_age:g} s): {len(report.too_young)} blobs")
        if report.unrecognised:
            size = sum(i.size for i in report.unrecognised)
            self.stdout.write(f"outside the known folders (left alone): {_size(len(report.unrecognised), size)}")
        if not delete:
            if orphans:
                self.stdout.write("Nothing was deleted; run again with --delete to remove the orphaned blobs.")
            return
        for info in orphans:
            store.delete(info.key)
        self.stdout.write(f"deleted: {_size(len(orphans), sum(i.size for i in orphans))}")
