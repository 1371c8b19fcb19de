# Before sharding: no app is sharded yet, and nothing sets a shard context.
SHARDED_APPS = []
SHARDING_MIDDLEWARE = []
