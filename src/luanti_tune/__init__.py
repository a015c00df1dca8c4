"""luanti-tune: a closed learning loop for Luanti (formerly Minetest) agents."""

__version__ = "0.1.0"
