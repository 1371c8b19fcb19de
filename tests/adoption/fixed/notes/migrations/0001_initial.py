
import django.db.models.deletion
import shardrouter.ids
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='Notebook',
            fields=[
                ('id', models.BigIntegerField(default=shardrouter.ids.new_id, editable=False, primary_key=True, serialize=False)),
                ('user_id', models.BigIntegerField(db_index=True)),
                ('title', models.CharField(max_length=200)),
                ('note_count', models.IntegerField(default=0)),
            ],
            options={
                'abstract': False,
                'constraints': [models.UniqueConstraint(fields=('id', 'user_id'), name='notes_notebook_shard_identity')],
            },
        ),
        migrations.CreateModel(
            name='Note',
            fields=[
                ('id', models.BigIntegerField(default=shardrouter.ids.new_id, editable=False, primary_key=True, serialize=False)),
                ('user_id', models.BigIntegerField(db_index=True)),
                ('body', models.TextField()),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('notebook', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name='notes', to='notes.notebook')),
            ],
            options={
                'abstract': False,
                'constraints': [models.UniqueConstraint(fields=('id', 'user_id'), name='notes_note_shard_identity')],
            },
        ),
    ]
