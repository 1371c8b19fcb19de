from django.db.models import F
from django.db.models.signals import post_save
from django.dispatch import receiver

from notes.models import Note, Notebook


@receiver(post_save, sender=Note)
def count_note(sender, instance, created, **kwargs):
    if created:
        Notebook.objects.filter(pk=instance.notebook_id).update(note_count=F("note_count") + 1)
