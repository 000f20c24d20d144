"""What runs the loop besides the app's worker: headless runs and the label-efficiency benchmark."""
