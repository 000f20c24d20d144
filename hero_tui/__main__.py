"""`python -m hero_tui` is `hero-tui`."""

from hero_tui.cli import main

main()
