"""Route families; each module has `add_routes(app)`."""
