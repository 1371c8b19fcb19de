from django.db import models

from shardrouter.models import ShardedModel


# ShardedModel gives each row an application-issued 64-bit id and user_id, the owner as a plain integer:
# the user lives in the control database, so no foreign key can point there.
class Notebook(ShardedModel):
    title = models.CharField(max_length=200)
    note_count = models.IntegerField(default=0)

    class Meta(ShardedModel.Meta):
        pass

    def __str__(self):
        return self.title


class Note(ShardedModel):
    # Both rows belong to the same user, so they always share a database; no database-level constraint, so
    # the two tables can be copied and cleaned up independently during a live move.
    notebook = models.ForeignKey(Notebook, on_delete=models.CASCADE, related_name="notes", db_constraint=False)
    body = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta(ShardedModel.Meta):
        pass

    def __str__(self):
        return self.body[:40]
