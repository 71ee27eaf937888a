-- luacheck configuration: the Lua halves, the shipped scripts and the
-- specs. Methods keep Python's signatures, so unused arguments are fine.
std = "lua54"
-- Python builtins: input (task.lua); bytearray, memoryview, bytes (host.c)
globals = { "input", "bytearray", "memoryview", "bytes" }
unused_args = false
max_line_length = 80
files["tests/**/*_spec.lua"] = { std = "+busted" }
exclude_files = { "build*/**" }
