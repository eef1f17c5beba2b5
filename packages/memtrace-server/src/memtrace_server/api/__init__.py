"""The HTTP API: app factory, auth dependency, routers and error rendering."""
