"""The built-in demo model: its procedural world, training script, judge and weights."""
