"""Real Luanti (Minetest) integration: install the mod, run ``minetestserver`` and the service."""
