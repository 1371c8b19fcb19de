# After the audit's fixes: the notes app is sharded by user ID, and requests carry their user's shard context.
SHARDED_APPS = ["notes"]
SHARDING_MIDDLEWARE = ["shardrouter.middleware.ShardContextMiddleware"]
