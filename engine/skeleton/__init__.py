"""What `suture init` writes: the shipped config.yaml, codes/ and playbooks/.

The files here are symlinks to the repository's top-level ones, so git keeps one copy;
building the wheel copies their contents in as package data.
"""
