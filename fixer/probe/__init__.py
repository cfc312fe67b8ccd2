"""Where and how a probe process runs: the service's user, environment and sandbox, and a root's files in place."""
