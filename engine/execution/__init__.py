"""Running playbooks: the actions, the runner that sequences them, the workers that claim runs."""
