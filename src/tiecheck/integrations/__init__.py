"""Hooks into other libraries' workflows. Each module imports its library; import only the one you use."""
