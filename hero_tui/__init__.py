"""hero_tui: the terminal front end of hero (command line and TUI). Never imports torch or diffusers."""
