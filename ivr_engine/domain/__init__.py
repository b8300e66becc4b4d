"""Plain, frozen data shared by the pure core and the adapters."""
