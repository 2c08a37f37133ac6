"""Storage follows the data: deleting rows deletes the blobs they own, durably, and orphans can be found.

A model that owns blobs says so with two small declarations:

* ``blob_namespaces``: the top-level folders whose entries are named by its primary key (``("images/",)``);
* ``blob_prefixes()``: the prefixes one row owns (``["images/<id>/"]``).

``delete_with_blobs`` is the one way to delete such rows (API views, public API, admin). It walks the same
cascade Django's ``delete()`` would (a ``Collector``), asks every row about to go for its prefixes, records
them as ``BlobPurge`` rows and deletes, all in one transaction: the outbox rows exist exactly when the delete
committed. On commit the ``Job.PURGE_BLOBS`` job runs ``purge_pending_blobs``; the sweeper calls it too,
so a lost message or a failing store only delays the purge.

Why an explicit function and not ``Model.delete()`` overrides or ``pre_delete`` signals: a cascade never
calls the children's ``delete()`` (deleting a project would not reach its images' overrides) and
``QuerySet.delete()`` bypasses it too, while a signal is a side effect nobody reading a view can see.
Walking the collector also keeps this app free of imports from the apps above it (detectors, public API):
each model answers for its own keys.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models, router, transaction
from django.db.models import F
from django.db.models.deletion import Collector

from imagery.blobstore import BlobInfo, BlobStore, validate_prefix
from imagery.models import BlobPurge
from imagery.storage import get_blob_store
from picterra.jobs import Job, enqueue

logger = logging.getLogger(__name__)

#: Rows handled by one ``purge_pending_blobs`` call; the rest wait for the next one.
PURGE_BATCH = 10_000
#: Blobs younger than this are never called orphans: an upload writes its file before its row commits.
ORPHAN_MIN_AGE_S = 3600
_OWNER_ID = re.compile(r"[^/.]*")


# --- deleting ------------------------------------------------------------------------------------------------------


def delete_with_blobs(target: models.Model | models.QuerySet) -> int:
    """Delete a row (or a queryset's rows) and everything that cascades from it, and purge their blobs.

    Returns the number of rows deleted. The purge is recorded in the delete's transaction and carried out
    after commit by a worker (retried until it succeeds), so it never slows or fails the request.
    """
    if isinstance(target, models.QuerySet):
        query = target._chain()
        query._for_write = True
        query.query.select_for_update = False
        query.query.select_related = False
        query.query.clear_ordering(force=True)
        using, roots = query.db, query
    else:
        if target.pk is None:
            raise ValueError(f"{type(target).__name__} has no primary key: it was never saved or already deleted")
        using, roots = router.db_for_write(type(target), instance=target), [target]
    with transaction.atomic(using=using):
        collector = Collector(using=using, origin=target)
        collector.collect(roots)
        prefixes = sorted({prefix for row in _rows_to_delete(collector) for prefix in owned_prefixes(row)})
        record_purges(prefixes, using=using)
        deleted, _ = collector.delete()
    return deleted


def _rows_to_delete(collector: Collector) -> Iterator[models.Model]:
    """Every row of a blob-owning model in the collector, including those it would delete without loading."""
    for model, instances in collector.data.items():
        if hasattr(model, "blob_prefixes"):
            yield from instances
    for queryset in collector.fast_deletes:
        if hasattr(queryset.model, "blob_prefixes"):
            yield from queryset.iterator()


def owned_prefixes(row: models.Model) -> list[str]:
    """The row's ``blob_prefixes()``, each checked to name one row's files and never a whole namespace."""
    if not hasattr(row, "blob_prefixes"):
        return []
    prefixes = list(row.blob_prefixes())
    for prefix in prefixes:
        check_owned_prefix(prefix)
    return prefixes


def check_owned_prefix(prefix: str, namespaces: Iterable[str] | None = None) -> str:
    """Refuse a prefix that could delete more than one row's files (empty, a namespace, a top-level folder)."""
    validate_prefix(prefix)
    namespaces = blob_namespaces() if namespaces is None else namespaces
    if prefix.strip("/").count("/") < 1 or any(namespace.startswith(prefix) for namespace in namespaces):
        raise ValueError(f"refusing to purge {prefix!r}: it covers a whole blob namespace")
    return prefix


def record_purges(prefixes: Iterable[str], *, using: str | None = None) -> None:
    """Record prefixes to purge in the current transaction and queue the purge once it commits."""
    rows = [BlobPurge(prefix=check_owned_prefix(prefix)) for prefix in prefixes]
    if not rows:
        return
    BlobPurge.objects.using(using).bulk_create(rows)
    enqueue(Job.PURGE_BLOBS)


def purge_pending_blobs(limit: int = PURGE_BATCH) -> dict[str, int]:
    """Delete the blobs of every recorded purge, then its row; a purge whose store call fails stays recorded.

    Idempotent: deleting a prefix that is already gone is a no-op, so a purge run twice (the task and the
    sweeper at once, a redelivered message) does no harm. Rows that failed most often come last, so one
    prefix the store keeps refusing never holds up the others.
    """
    store = get_blob_store()
    namespaces = list(blob_namespaces())
    purged = failed = 0
    for pk, prefix in BlobPurge.objects.order_by("attempts", "created_at").values_list("pk", "prefix")[:limit]:
        try:
            store.delete_prefix(check_owned_prefix(prefix, namespaces))
        except Exception as exc:  # the row keeps the error and the next run tries again
            logger.warning("purge of blob prefix %r failed; it stays recorded", prefix, exc_info=True)
            BlobPurge.objects.filter(pk=pk).update(
                attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000]
            )
            failed += 1
            continue
        BlobPurge.objects.filter(pk=pk).delete()
        purged += 1
    return {"blob_prefixes_purged": purged, "blob_purges_failed": failed}


class DeleteWithBlobsAdminMixin:
    """For a ``ModelAdmin`` whose rows own blobs (or cascade to rows that do): the admin's single and bulk
    deletes go through ``delete_with_blobs``, like the API's."""

    def delete_model(self, request, obj) -> None:
        delete_with_blobs(obj)

    def delete_queryset(self, request, queryset) -> None:
        delete_with_blobs(queryset)


# --- orphans -------------------------------------------------------------------------------------------------------


def blob_owner_models() -> list[type[models.Model]]:
    return [model for model in apps.get_models() if getattr(model, "blob_namespaces", None)]


def blob_namespaces() -> dict[str, type[models.Model]]:
    """Namespace (``"images/"``) → the model whose primary keys name its entries."""
    return {namespace: model for model in blob_owner_models() for namespace in model.blob_namespaces}


@dataclass
class OrphanReport:
    """What ``find_orphans`` saw: blobs no row owns, blobs too young to judge, and keys in no namespace."""

    orphans: dict[str, list[BlobInfo]] = field(default_factory=lambda: defaultdict(list))
    too_young: list[BlobInfo] = field(default_factory=list)
    unrecognised: list[BlobInfo] = field(default_factory=list)
    owned: int = 0

    @property
    def orphan_blobs(self) -> list[BlobInfo]:
        return [info for infos in self.orphans.values() for info in infos]


def find_orphans(
    store: BlobStore | None = None, *, min_age_s: float = ORPHAN_MIN_AGE_S, now: float | None = None
) -> OrphanReport:
    """Blobs under a known namespace whose owning row does not exist, older than ``min_age_s``.

    An owner id that is not exactly the primary key's canonical text (``images/NOT-AN-ID/…``) owns nothing.
    Keys outside every namespace are reported apart and never called orphans: nobody here knows what they are.
    """
    store = store or get_blob_store()
    now = time.time() if now is None else now
    namespaces = blob_namespaces()
    by_length = sorted(namespaces, key=len, reverse=True)
    report = OrphanReport()
    # (namespace, owner id) → its blobs old enough to judge
    groups: dict[tuple[str, str], list[BlobInfo]] = defaultdict(list)
    for info in store.list_info(""):
        namespace = next((ns for ns in by_length if info.key.startswith(ns)), None)
        if namespace is None:
            report.unrecognised.append(info)
        elif now - info.modified < min_age_s:
            report.too_young.append(info)
        else:
            groups[(namespace, _OWNER_ID.match(info.key, len(namespace)).group())].append(info)
    by_namespace: dict[str, set[str]] = defaultdict(set)
    for namespace, owner_id in groups:
        by_namespace[namespace].add(owner_id)
    for namespace, owner_ids in by_namespace.items():
        existing = _existing_ids(namespaces[namespace], owner_ids)
        for owner_id in owner_ids:
            infos = groups[(namespace, owner_id)]
            if owner_id in existing:
                report.owned += len(infos)
            else:
                report.orphans[namespace].extend(infos)
    return report


def _existing_ids(model: type[models.Model], owner_ids: set[str]) -> set[str]:
    """The ids among ``owner_ids`` that are a row of ``model``, in their canonical text form."""
    pk = model._meta.pk
    canonical = {}
    for owner_id in owner_ids:
        try:
            value = pk.to_python(owner_id)
        except ValidationError:
            continue
        if str(value) == owner_id:
            canonical[value] = owner_id
    values = list(canonical)
    found: set[str] = set()
    for start in range(0, len(values), 1000):
        rows = model._default_manager.filter(pk__in=values[start : start + 1000]).values_list("pk", flat=True)
        found.update(canonical[value] for value in rows)
    return found
