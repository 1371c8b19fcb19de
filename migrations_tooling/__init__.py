"""Live data moves: move a user-ID range between databases while the application keeps serving.

The engine behind ``manage.py shardmove``. It orchestrates PostgreSQL logical
replication, a database-enforced write freeze and the shard map; it depends on
``shardrouter`` only and never imports project apps.
"""

__version__ = "0.1.0"
