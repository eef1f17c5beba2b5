"""PostgreSQL migrations, applied in the order of their number."""
