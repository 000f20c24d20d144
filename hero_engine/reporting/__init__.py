"""What a session taught, for people and for other programs: an HTML report, plots and the labels as a dataset (torch-free)."""
