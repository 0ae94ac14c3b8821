"""Command-line entry points (thin: parse, build typed configs, call the library)."""
