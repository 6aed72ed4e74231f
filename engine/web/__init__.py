"""The HTTP surface: the JSON API and (later) the console."""
