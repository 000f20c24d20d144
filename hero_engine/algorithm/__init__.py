"""HERO's algorithm over tensors: sampling with log-probs, the feedback encoder, rewards, feedback-guided noise, the policy update."""
