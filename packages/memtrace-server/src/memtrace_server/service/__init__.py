"""Use cases of the service, free of any web framework."""
