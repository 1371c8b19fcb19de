"""Notes of users (sharded); the fields depend on the code version under test (``QQ_DDL_MIGRATIONS``)."""

from __future__ import annotations

import os

from django.db import models

from shardrouter.models import ShardedModel

VERSION = os.environ.get("QQ_DDL_MIGRATIONS", "v1")


class Note(ShardedModel):
    if VERSION != "destructive":
        text = models.CharField(max_length=200)
    if VERSION in ("additive", "additive2"):
        colour = models.CharField(max_length=20, null=True)

    class Meta(ShardedModel.Meta):
        app_label = "ddlnotes"


if VERSION == "additive2":

    class Tag(ShardedModel):
        name = models.CharField(max_length=50)

        class Meta(ShardedModel.Meta):
            app_label = "ddlnotes"
