"""The `suture` command line."""
