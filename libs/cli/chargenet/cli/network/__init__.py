"""The whole network in one place: the embedded default (every service in this process), the
distributed stack's process supervisor, the charge point fleet and the REST client both use."""
