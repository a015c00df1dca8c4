-- luacheck configuration for mods/ (Luanti 5.x engine globals).
std = "luajit"
max_line_length = 120
globals = { "luanti_tune" }
read_globals = {
	"core", "minetest", "vector", "ItemStack", "VoxelArea", "VoxelManip", "dump", "dump2",
	table = { fields = { "copy", "indexof", "insert_all", "key_value_swap" } },
	string = { fields = { "split", "trim" } },
	math = { fields = { "hypot", "sign", "factorial", "round" } },
}
files["mods/*/spec/**"] = { std = "+busted", globals = { "core", "luanti_tune" } }
