"""The on-disk model repository: version folders, manifests, version policy, and the manager."""
