"""Task types, one module each; they register themselves in `bench.registry.TASK_TYPES`."""
