"""The recording core: metrics, flag counts, registries, snapshots and the payload."""
