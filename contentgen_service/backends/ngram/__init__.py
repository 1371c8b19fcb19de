"""A local word-level n-gram language model trained on stdlib docstrings."""
