from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from notes.models import Note


@shared_task
def purge_old_notes(days=365):
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = Note.objects.filter(created__lt=cutoff).delete()
    return deleted
