"""Process-wide counters: a leaf every room may import (it imports nothing of the project)."""
