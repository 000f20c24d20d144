"""A session: its rounds (sampled, stored, learned from), the tuned model and its checkpoints, and recovering what was lost."""
