"""Simulated people: the demo's procedural world and judge, and the evaluators that label like a person with a fixed intent."""
