"""Overlong-sample handling: estimate expanded media tokens and drop samples over max_length."""
