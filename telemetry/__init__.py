"""Process-wide counters: a leaf every room may import (no project imports)."""
