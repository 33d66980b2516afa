"""The operator console and the admin page: HTML shells and their static files."""
