"""The allocation engine: Lua scripts (package files) and the Python side that calls them."""
