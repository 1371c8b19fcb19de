from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from notes.models import Note
from shardrouter.scatter import scatter


@shared_task
def purge_old_notes(days=365):
    cutoff = timezone.now() - timedelta(days=days)
    deleted = scatter(Note.objects.filter(created__lt=cutoff), lambda qs: qs.delete()[0])
    return sum(deleted.results.values())
