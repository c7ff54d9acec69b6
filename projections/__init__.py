"""Read models rebuilt from the event store: what auditors and dashboards read."""
