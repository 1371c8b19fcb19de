"""shardrouter: range-based sharding by user ID for Django.

A reusable app: a versioned shard map in the control database, a database
router that follows Django's contract, a shard context for requests, tasks and
commands, globally unique time-ordered IDs, explicit cross-shard reads, system
checks and operator commands. It never imports the project's own apps.
"""

__version__ = "0.1.0"
